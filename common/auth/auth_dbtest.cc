// Keys and projects on the real tenancy schema.
#include <gtest/gtest.h>

#include "common/auth/authenticator.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/status_matchers.h"
#include "tests/pg/test_database.h"

namespace flywheel::auth {
namespace {

using ::flywheel::testing::StatusIs;
using ::flywheel::testing::TestDatabase;

class TenancyDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(db_, TestDatabase::Create());
    pool_ = std::make_unique<db::ConnectionPool>(db::PoolOptions{db_->conninfo(), 4});
    store_ = std::make_unique<PgTenancyStore>(pool_.get(), &logger_);
    admin_ = std::make_unique<TenancyAdmin>(store_.get());
  }
  Logger logger_{"test", Logger::Level::kError};
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<PgTenancyStore> store_;
  std::unique_ptr<TenancyAdmin> admin_;
};

TEST_F(TenancyDbTest, ProjectsAreUniqueAndKeysNeedAProject) {
  ASSERT_OK(admin_->CreateProject("acme", "Acme"));
  EXPECT_THAT(admin_->CreateProject("acme", "Again"), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(admin_->CreateKey("nobody", KeyKind::kPublic, 0, ""),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<Project> projects, admin_->ListProjects());
  ASSERT_EQ(projects.size(), 1u);
  EXPECT_EQ(projects[0].display_name, "Acme");
}

TEST_F(TenancyDbTest, StoredKeysAuthenticateAndAreHashedAtRest) {
  ASSERT_OK(admin_->CreateProject("acme", ""));
  ASSERT_OK(admin_->CreateProject("rival", ""));
  ASSERT_OK_AND_ASSIGN(CreatedKey acme, admin_->CreateKey("acme", KeyKind::kSecret,
                                                          static_cast<ScopeSet>(Scope::kEval), ""));
  ASSERT_OK_AND_ASSIGN(CreatedKey rival, admin_->CreateKey("rival", KeyKind::kPublic, 0, ""));
  Authenticator authenticator(store_.get(), AuthenticatorOptions{absl::ZeroDuration()});
  ASSERT_OK_AND_ASSIGN(
      Principal principal,
      authenticator.Authenticate("Bearer " + acme.plaintext, Requirement::Of(Scope::kEval)));
  EXPECT_EQ(principal.project_id, "acme");
  ASSERT_OK_AND_ASSIGN(Principal other, authenticator.Authenticate("Bearer " + rival.plaintext,
                                                                   Requirement::SignalWrite()));
  EXPECT_EQ(other.project_id, "rival");
  EXPECT_THAT(
      authenticator.Authenticate("Bearer " + rival.plaintext, Requirement::Of(Scope::kRead)),
      StatusIs(absl::StatusCode::kPermissionDenied));
  // Nothing in the table contains the plaintext secret.
  ASSERT_OK_AND_ASSIGN(std::vector<StoredKey> keys, admin_->ListKeys("acme"));
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].secret_sha256.size(), 32u);
  EXPECT_EQ(acme.plaintext.find(keys[0].secret_sha256), std::string::npos);
  EXPECT_EQ(keys[0].scopes, static_cast<ScopeSet>(Scope::kEval));
}

TEST_F(TenancyDbTest, RevokedKeyIsRejected) {
  ASSERT_OK(admin_->CreateProject("acme", ""));
  ASSERT_OK_AND_ASSIGN(CreatedKey key, admin_->CreateKey("acme", KeyKind::kSecret,
                                                         static_cast<ScopeSet>(Scope::kRead), ""));
  Authenticator authenticator(store_.get(), AuthenticatorOptions{absl::ZeroDuration()});
  ASSERT_OK(authenticator.Authenticate("Bearer " + key.plaintext, Requirement::Of(Scope::kRead)));
  ASSERT_OK(admin_->RevokeKey("acme", key.key.key_id));
  EXPECT_THAT(authenticator.Authenticate("Bearer " + key.plaintext, Requirement::Of(Scope::kRead)),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Revoking through another project's id does not find the key.
  ASSERT_OK(admin_->CreateProject("rival", ""));
  EXPECT_THAT(admin_->RevokeKey("rival", key.key.key_id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TenancyDbTest, ServiceKeysActForAnyProjectAndAreRevocable) {
  ASSERT_OK(admin_->CreateProject("acme", ""));
  ASSERT_OK(admin_->CreateProject("rival", ""));
  ASSERT_OK_AND_ASSIGN(CreatedKey key,
                       admin_->CreateServiceKey(static_cast<ScopeSet>(Scope::kRead), "workers"));
  Authenticator authenticator(store_.get(), AuthenticatorOptions{absl::ZeroDuration()});
  for (const char* project : {"acme", "rival"}) {
    ASSERT_OK_AND_ASSIGN(Principal principal,
                         authenticator.Authenticate("Bearer " + key.plaintext,
                                                    Requirement::Of(Scope::kRead), project));
    EXPECT_EQ(principal.project_id, project);
  }
  EXPECT_THAT(authenticator.Authenticate("Bearer " + key.plaintext, Requirement::Of(Scope::kRead),
                                         "nobody"),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<StoredKey> listed, admin_->ListServiceKeys());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].kind, KeyKind::kService);
  EXPECT_EQ(listed[0].scopes, static_cast<ScopeSet>(Scope::kRead));
  ASSERT_OK(admin_->RevokeServiceKey(key.key.key_id));
  EXPECT_THAT(
      authenticator.Authenticate("Bearer " + key.plaintext, Requirement::Of(Scope::kRead), "acme"),
      StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(admin_->RevokeServiceKey("0123456789abcdef"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace flywheel::auth
