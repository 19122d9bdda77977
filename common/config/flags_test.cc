#include "common/config/flags.h"

#include <gtest/gtest.h>

#include <map>

#include "common/status/status_matchers.h"

namespace flywheel {
namespace {

using ::flywheel::testing::StatusIs;

FlagSet::EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

struct Options {
  std::string listen = "127.0.0.1:0";
  int pool_size = 8;
  bool migrate = true;
  absl::Duration grace = absl::Seconds(10);
};

void Define(FlagSet& flags, Options& options) {
  flags.String("listen", &options.listen, "address");
  flags.Int("pool_size", &options.pool_size, "connections");
  flags.Bool("migrate", &options.migrate, "migrate at start");
  flags.Duration("shutdown_grace", &options.grace, "drain deadline");
}

TEST(FlagSetTest, FlagBeatsEnvironmentBeatsDefault) {
  Options options;
  FlagSet flags("prog", "test");
  Define(flags, options);
  const char* argv[] = {"prog", "--pool_size=3"};
  ASSERT_OK(flags.Parse(2, argv, nullptr,
                        FakeEnv({{"FLYWHEEL_POOL_SIZE", "5"}, {"FLYWHEEL_LISTEN", "[::]:7000"}})));
  EXPECT_EQ(options.pool_size, 3);
  EXPECT_EQ(options.listen, "[::]:7000");
  EXPECT_TRUE(options.migrate);
  EXPECT_EQ(options.grace, absl::Seconds(10));
}

TEST(FlagSetTest, ParsesSeparateValuesBooleansAndDurations) {
  Options options;
  FlagSet flags("prog", "test");
  Define(flags, options);
  std::vector<std::string> positional;
  const char* argv[] = {"prog", "--listen", "x:1", "--nomigrate", "--shutdown-grace=1.5s", "pos"};
  ASSERT_OK(flags.Parse(6, argv, &positional, FakeEnv({})));
  EXPECT_EQ(options.listen, "x:1");
  EXPECT_FALSE(options.migrate);
  EXPECT_EQ(options.grace, absl::Milliseconds(1500));
  EXPECT_EQ(positional, std::vector<std::string>{"pos"});
}

TEST(FlagSetTest, BadValuesAndUnknownFlagsAreInvalidArgument) {
  Options options;
  FlagSet flags("prog", "test");
  Define(flags, options);
  const char* bad_int[] = {"prog", "--pool_size=many"};
  EXPECT_THAT(flags.Parse(2, bad_int, nullptr, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const char* unknown[] = {"prog", "--colour=blue"};
  EXPECT_THAT(flags.Parse(2, unknown, nullptr, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(flags.Parse(1, unknown, nullptr, FakeEnv({{"FLYWHEEL_SHUTDOWN_GRACE", "soon"}})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const char* stray[] = {"prog", "stray"};
  EXPECT_THAT(flags.Parse(2, stray, nullptr, FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FlagSetTest, HelpIsReportedAndUsageListsEnvNames) {
  Options options;
  FlagSet flags("prog", "test");
  Define(flags, options);
  const char* argv[] = {"prog", "--help"};
  ASSERT_OK(flags.Parse(2, argv, nullptr, FakeEnv({})));
  EXPECT_TRUE(flags.help_requested());
  EXPECT_NE(flags.Usage().find("FLYWHEEL_POOL_SIZE"), std::string::npos);
}

}  // namespace
}  // namespace flywheel
