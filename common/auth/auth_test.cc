#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>

#include "common/auth/api_key.h"
#include "common/auth/authenticator.h"
#include "common/auth/client_credentials.h"
#include "common/auth/grpc_auth.h"
#include "common/auth/tenancy_admin.h"
#include "common/status/grpc_status.h"
#include "common/status/status_matchers.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace flywheel::auth {
namespace {

using ::flywheel::testing::StatusIs;

class FakeStore : public TenancyStore {
 public:
  absl::StatusOr<std::optional<StoredKey>> FindKey(const std::string& key_id) override {
    ++lookups;
    if (down) return absl::UnavailableError("down");
    auto it = keys.find(key_id);
    if (it == keys.end()) return std::nullopt;
    return it->second;
  }
  absl::Status CreateProject(const Project& project) override {
    if (!projects.emplace(project.project_id, project).second) {
      return absl::AlreadyExistsError("taken");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<Project>> ListProjects() override { return std::vector<Project>{}; }
  absl::Status InsertKey(const StoredKey& key) override {
    if (projects.count(key.project_id) == 0) return absl::NotFoundError("no project");
    keys[key.key_id] = key;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<StoredKey>> ListKeys(const std::string&) override {
    return std::vector<StoredKey>{};
  }
  absl::Status RevokeKey(const std::string&, const std::string& key_id) override {
    keys[key_id].revoked = true;
    return absl::OkStatus();
  }

  absl::StatusOr<bool> ProjectExists(const std::string& project_id) override {
    if (down) return absl::UnavailableError("down");
    return projects.count(project_id) > 0;
  }
  absl::StatusOr<std::optional<StoredKey>> FindServiceKey(const std::string& key_id) override {
    ++lookups;
    if (down) return absl::UnavailableError("down");
    auto it = service_keys.find(key_id);
    if (it == service_keys.end()) return std::nullopt;
    return it->second;
  }
  absl::Status InsertServiceKey(const StoredKey& key) override {
    service_keys[key.key_id] = key;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<StoredKey>> ListServiceKeys() override {
    return std::vector<StoredKey>{};
  }
  absl::Status RevokeServiceKey(const std::string& key_id) override {
    if (service_keys.count(key_id) == 0) return absl::NotFoundError("no key");
    service_keys[key_id].revoked = true;
    return absl::OkStatus();
  }

  std::map<std::string, Project> projects;
  std::map<std::string, StoredKey> keys;
  std::map<std::string, StoredKey> service_keys;
  int lookups = 0;
  bool down = false;
};

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(admin_.CreateProject("alpha", "Alpha"));
    ASSERT_OK(admin_.CreateProject("beta", "Beta"));
    ASSERT_OK_AND_ASSIGN(CreatedKey ingest,
                         admin_.CreateKey("alpha", KeyKind::kSecret,
                                          static_cast<ScopeSet>(Scope::kIngest) |
                                              static_cast<ScopeSet>(Scope::kRead),
                                          "backend"));
    ingest_key_ = ingest.plaintext;
    ASSERT_OK_AND_ASSIGN(CreatedKey browser, admin_.CreateKey("alpha", KeyKind::kPublic, 0, "web"));
    public_key_ = browser.plaintext;
    ASSERT_OK_AND_ASSIGN(
        CreatedKey other,
        admin_.CreateKey("beta", KeyKind::kSecret, static_cast<ScopeSet>(Scope::kRead), "other"));
    beta_key_ = other.plaintext;
    ASSERT_OK_AND_ASSIGN(CreatedKey service,
                         admin_.CreateServiceKey(static_cast<ScopeSet>(Scope::kRead) |
                                                     static_cast<ScopeSet>(Scope::kReview),
                                                 "workers"));
    service_key_ = service.plaintext;
  }

  FakeStore store_;
  TenancyAdmin admin_{&store_};
  std::string ingest_key_;
  std::string public_key_;
  std::string beta_key_;
  std::string service_key_;
};

TEST_F(AuthTest, ValidSecretKeyYieldsItsProjectAndScopes) {
  Authenticator authenticator(&store_);
  ASSERT_OK_AND_ASSIGN(
      Principal principal,
      authenticator.Authenticate("Bearer " + ingest_key_, Requirement::Of(Scope::kRead)));
  EXPECT_EQ(principal.project_id, "alpha");
  EXPECT_EQ(principal.kind, KeyKind::kSecret);
}

TEST_F(AuthTest, KeyOfAnotherProjectIdentifiesThatProjectOnly) {
  Authenticator authenticator(&store_);
  ASSERT_OK_AND_ASSIGN(
      Principal principal,
      authenticator.Authenticate("Bearer " + beta_key_, Requirement::Of(Scope::kRead)));
  EXPECT_EQ(principal.project_id, "beta");
}

TEST_F(AuthTest, MissingMalformedOrWrongKeysAreUnauthenticated) {
  Authenticator authenticator(&store_);
  const Requirement read = Requirement::Of(Scope::kRead);
  EXPECT_THAT(authenticator.Authenticate("", read), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(authenticator.Authenticate("Basic abc", read),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(authenticator.Authenticate("Bearer not-a-key", read),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Right key id, wrong secret.
  std::string forged = ingest_key_;
  forged.back() = forged.back() == '0' ? '1' : '0';
  EXPECT_THAT(authenticator.Authenticate("Bearer " + forged, read),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Unknown key id.
  ASSERT_OK_AND_ASSIGN(NewKey unknown, GenerateApiKey(KeyKind::kSecret));
  EXPECT_THAT(authenticator.Authenticate("Bearer " + unknown.plaintext, read),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(AuthTest, PublicKeyMayOnlyWriteSignals) {
  Authenticator authenticator(&store_);
  ASSERT_OK_AND_ASSIGN(Principal principal, authenticator.Authenticate("Bearer " + public_key_,
                                                                       Requirement::SignalWrite()));
  EXPECT_EQ(principal.kind, KeyKind::kPublic);
  EXPECT_EQ(principal.project_id, "alpha");
  EXPECT_THAT(authenticator.Authenticate("Bearer " + public_key_, Requirement::Of(Scope::kIngest)),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authenticator.Authenticate("Bearer " + public_key_, Requirement::Of(Scope::kRead)),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthTest, SecretKeyWithoutTheScopeIsPermissionDenied) {
  Authenticator authenticator(&store_);
  EXPECT_THAT(authenticator.Authenticate("Bearer " + ingest_key_, Requirement::Of(Scope::kAdmin)),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(authenticator.Authenticate("Bearer " + ingest_key_,
                                       Requirement::AnyOf(Scope::kAdmin, Scope::kIngest)));
  EXPECT_OK(authenticator.Authenticate("Bearer " + ingest_key_, Requirement::SignalWrite()));
}

TEST_F(AuthTest, AdminScopeImpliesEveryScope) {
  ASSERT_OK_AND_ASSIGN(
      CreatedKey admin,
      admin_.CreateKey("alpha", KeyKind::kSecret, static_cast<ScopeSet>(Scope::kAdmin), ""));
  Authenticator authenticator(&store_);
  for (Scope scope : {Scope::kIngest, Scope::kRead, Scope::kReview, Scope::kEval}) {
    EXPECT_OK(authenticator.Authenticate("Bearer " + admin.plaintext, Requirement::Of(scope)));
  }
}

absl::Time fake_now = absl::UnixEpoch();
absl::Time FakeNow() { return fake_now; }

TEST_F(AuthTest, VerifiedKeysAreCachedUntilTheTtlAndRevocationThenApplies) {
  Authenticator authenticator(&store_, AuthenticatorOptions{absl::Seconds(30), absl::Seconds(5)});
  authenticator.SetClockForTesting(&FakeNow);
  const Requirement read = Requirement::Of(Scope::kRead);
  ASSERT_OK(authenticator.Authenticate("Bearer " + ingest_key_, read));
  ASSERT_OK(authenticator.Authenticate("Bearer " + ingest_key_, read));
  EXPECT_EQ(store_.lookups, 1);
  ASSERT_OK_AND_ASSIGN(ParsedKey parsed, ParseApiKey(ingest_key_));
  ASSERT_OK(store_.RevokeKey("alpha", parsed.key_id));
  fake_now += absl::Seconds(31);
  EXPECT_THAT(authenticator.Authenticate("Bearer " + ingest_key_, read),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(store_.lookups, 2);
}

TEST_F(AuthTest, StoreOutageIsUnavailableNotUnauthenticated) {
  Authenticator authenticator(&store_);
  store_.down = true;
  EXPECT_THAT(authenticator.Authenticate("Bearer " + ingest_key_, Requirement::Of(Scope::kRead)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(AuthTest, ServiceKeyActsForTheProjectItNames) {
  Authenticator authenticator(&store_);
  ASSERT_OK_AND_ASSIGN(
      Principal alpha,
      authenticator.Authenticate("Bearer " + service_key_, Requirement::Of(Scope::kRead), "alpha"));
  EXPECT_EQ(alpha.project_id, "alpha");
  EXPECT_EQ(alpha.kind, KeyKind::kService);
  ASSERT_OK_AND_ASSIGN(Principal beta,
                       authenticator.Authenticate("Bearer " + service_key_,
                                                  Requirement::Of(Scope::kReview), "beta"));
  EXPECT_EQ(beta.project_id, "beta");
}

TEST_F(AuthTest, ServiceKeyWithoutOrWithUnknownProjectOrScopeIsRefused) {
  Authenticator authenticator(&store_);
  EXPECT_THAT(authenticator.Authenticate("Bearer " + service_key_, Requirement::Of(Scope::kRead)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      authenticator.Authenticate("Bearer " + service_key_, Requirement::Of(Scope::kRead), "nobody"),
      StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(authenticator.Authenticate("Bearer " + service_key_, Requirement::Of(Scope::kIngest),
                                         "alpha"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(
      authenticator.Authenticate("Bearer " + service_key_, Requirement::SignalWrite(), "alpha"),
      StatusIs(absl::StatusCode::kPermissionDenied));
  // A project key ignores the project metadata: it cannot reach another project with it.
  ASSERT_OK_AND_ASSIGN(
      Principal own,
      authenticator.Authenticate("Bearer " + beta_key_, Requirement::Of(Scope::kRead), "alpha"));
  EXPECT_EQ(own.project_id, "beta");
}

TEST_F(AuthTest, ServiceKeyIdsDoNotAuthenticateAsProjectKeysAndRevocationApplies) {
  Authenticator authenticator(&store_, AuthenticatorOptions{absl::ZeroDuration()});
  ASSERT_OK_AND_ASSIGN(ParsedKey parsed, ParseApiKey(service_key_));
  EXPECT_EQ(parsed.kind, KeyKind::kService);
  // The same id and secret presented as a secret key is unknown.
  const std::string as_secret = "fw_sk_" + parsed.key_id + "_" + parsed.secret;
  EXPECT_THAT(authenticator.Authenticate("Bearer " + as_secret, Requirement::Of(Scope::kRead)),
              StatusIs(absl::StatusCode::kUnauthenticated));
  ASSERT_OK(admin_.RevokeServiceKey(parsed.key_id));
  EXPECT_THAT(
      authenticator.Authenticate("Bearer " + service_key_, Requirement::Of(Scope::kRead), "alpha"),
      StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(TenancyAdminTest, ServiceKeysNeedScopesAndNeverAdmin) {
  FakeStore store;
  TenancyAdmin admin(&store);
  EXPECT_THAT(admin.CreateServiceKey(0, ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin.CreateServiceKey(static_cast<ScopeSet>(Scope::kAdmin), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(admin.CreateProject("alpha", ""));
  EXPECT_THAT(admin.CreateKey("alpha", KeyKind::kService, static_cast<ScopeSet>(Scope::kRead), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TenancyAdminTest, ValidatesProjectIdsAndKeyScopes) {
  FakeStore store;
  TenancyAdmin admin(&store);
  EXPECT_THAT(admin.CreateProject("Bad Id", ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin.CreateProject("-lead", ""), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(admin.CreateProject("ok-1", ""));
  EXPECT_THAT(admin.CreateProject("ok-1", ""), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(admin.CreateKey("ok-1", KeyKind::kPublic, static_cast<ScopeSet>(Scope::kRead), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin.CreateKey("ok-1", KeyKind::kSecret, 0, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin.CreateKey("missing", KeyKind::kPublic, 0, ""),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ApiKeyTest, GeneratedKeysParseAndOnlyTheirHashIsKept) {
  ASSERT_OK_AND_ASSIGN(NewKey key, GenerateApiKey(KeyKind::kPublic));
  ASSERT_OK_AND_ASSIGN(ParsedKey parsed, ParseApiKey(key.plaintext));
  EXPECT_EQ(parsed.kind, KeyKind::kPublic);
  EXPECT_EQ(parsed.key_id, key.key_id);
  EXPECT_EQ(HashSecret(parsed.secret), key.secret_sha256);
  EXPECT_EQ(key.secret_sha256.size(), 32u);
  EXPECT_EQ(key.plaintext.find(key.secret_sha256), std::string::npos);
  ASSERT_OK_AND_ASSIGN(NewKey other, GenerateApiKey(KeyKind::kPublic));
  EXPECT_NE(other.plaintext, key.plaintext);
}

TEST(ApiKeyTest, ScopesParseAndUnknownScopesAreRejected) {
  ASSERT_OK_AND_ASSIGN(ScopeSet scopes, ParseScopes("ingest, read"));
  EXPECT_EQ(ScopeNames(scopes), (std::vector<std::string>{"ingest", "read"}));
  EXPECT_THAT(ParseScopes("ingest,root"), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The gRPC glue: credentials travel in metadata and failures become gRPC status codes.
class GuardedHealth final : public grpc::health::v1::Health::Service {
 public:
  explicit GuardedHealth(Authenticator* authenticator) : authenticator_(authenticator) {}
  grpc::Status Check(grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    absl::StatusOr<Principal> principal =
        AuthenticateCall(*context, *authenticator_, Requirement::Of(Scope::kRead));
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }

 private:
  Authenticator* authenticator_;
};

TEST_F(AuthTest, GrpcCallsCarryTheKeyInMetadata) {
  Authenticator authenticator(&store_);
  GuardedHealth service(&authenticator);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  auto call = [&](const std::string& key, const std::string& project = "") {
    grpc::ClientContext context;
    if (!project.empty()) {
      AttachServiceKey(context, key, project);
    } else if (!key.empty()) {
      context.AddMetadata("authorization", "Bearer " + key);
    }
    grpc::health::v1::HealthCheckResponse response;
    return stub->Check(&context, {}, &response).error_code();
  };
  EXPECT_EQ(call(ingest_key_), grpc::StatusCode::OK);
  EXPECT_EQ(call(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call(public_key_), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(service_key_, "beta"), grpc::StatusCode::OK);
  EXPECT_EQ(call(service_key_, "nobody"), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(call(service_key_), grpc::StatusCode::INVALID_ARGUMENT);
  server->Shutdown();
}

}  // namespace
}  // namespace flywheel::auth
