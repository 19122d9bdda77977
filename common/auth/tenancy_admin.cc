#include "common/auth/tenancy_admin.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace flywheel::auth {
namespace {

bool ValidProjectId(const std::string& id) {
  if (id.empty() || id.size() > 63) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_'))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<Project> TenancyAdmin::CreateProject(const std::string& project_id,
                                                    const std::string& display_name) {
  if (!ValidProjectId(project_id)) {
    return absl::InvalidArgumentError(
        "project_id: 1..63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit");
  }
  if (display_name.size() > 200) {
    return absl::InvalidArgumentError("display_name: at most 200 bytes");
  }
  Project project{project_id, display_name.empty() ? project_id : display_name, absl::Now()};
  absl::Status status = store_->CreateProject(project);
  if (!status.ok()) return status;
  return project;
}

absl::StatusOr<CreatedKey> TenancyAdmin::CreateKey(const std::string& project_id, KeyKind kind,
                                                   ScopeSet scopes,
                                                   const std::string& display_name) {
  if (kind == KeyKind::kService) {
    return absl::InvalidArgumentError("kind: service keys belong to no project");
  }
  if (kind == KeyKind::kPublic && scopes != 0) {
    return absl::InvalidArgumentError("scopes: public keys carry no scopes (they write signals)");
  }
  if (kind == KeyKind::kSecret && scopes == 0) {
    return absl::InvalidArgumentError("scopes: a secret key needs at least one scope");
  }
  absl::StatusOr<NewKey> generated = GenerateApiKey(kind);
  if (!generated.ok()) return generated.status();
  CreatedKey created;
  created.plaintext = generated->plaintext;
  created.key = StoredKey{project_id,   generated->key_id, kind, scopes, generated->secret_sha256,
                          display_name, absl::Now(),       false};
  absl::Status status = store_->InsertKey(created.key);
  if (!status.ok()) return status;
  return created;
}

absl::StatusOr<CreatedKey> TenancyAdmin::CreateServiceKey(ScopeSet scopes,
                                                          const std::string& display_name) {
  if (scopes == 0) return absl::InvalidArgumentError("scopes: a service key needs a scope");
  if (scopes & static_cast<ScopeSet>(Scope::kAdmin)) {
    return absl::InvalidArgumentError("scopes: service keys never carry the admin scope");
  }
  absl::StatusOr<NewKey> generated = GenerateApiKey(KeyKind::kService);
  if (!generated.ok()) return generated.status();
  CreatedKey created;
  created.plaintext = generated->plaintext;
  created.key = StoredKey{"",
                          generated->key_id,
                          KeyKind::kService,
                          scopes,
                          generated->secret_sha256,
                          display_name,
                          absl::Now(),
                          false};
  absl::Status status = store_->InsertServiceKey(created.key);
  if (!status.ok()) return status;
  return created;
}

}  // namespace flywheel::auth
