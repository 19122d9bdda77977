// flywheel-capture: captures traces and user signals, labels traces and publishes the flagged feed
#include <memory>

#include "common/server/service_main.h"
#include "services/capture/capture_logic.h"
#include "services/capture/capture_service.h"
#include "services/capture/labeler.h"
#include "services/capture/pg_capture_repository.h"

namespace {

struct CaptureFlags {
  int worker_threads = 8;
  bool labeler = true;
  absl::Duration retention = absl::Hours(24 * 90);
  int user_signals_per_minute = 60;
  int labeler_nice = 10;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace flywheel;  // NOLINT: wiring only
  CaptureFlags flags;
  ServiceSpec spec;
  spec.name = "capture";
  spec.schema = "capture";
  spec.description =
      "captures traces and user signals, labels traces and publishes the flagged feed";
  spec.define_flags = [&flags](FlagSet& set) {
    set.Int("worker_threads", &flags.worker_threads, "threads for database work");
    set.Bool("labeler", &flags.labeler,
             "run the background labeler and idle-session sweeper in this process");
    set.Duration("retention", &flags.retention, "oldest timestamp accepted on ingestion");
    set.Int("labeler_nice", &flags.labeler_nice,
            "nice increment of the labeler thread, 0..19: labeling yields the CPU to request "
            "handling when both compete; 0 keeps the process's priority");
    set.Int("user_signals_per_minute", &flags.user_signals_per_minute,
            "explicit feedback and public-key signals per user and minute, per replica (0: off)");
  };
  spec.validate = [&flags]() -> absl::Status {
    if (flags.worker_threads < 1 || flags.worker_threads > 256) {
      return absl::InvalidArgumentError("--worker_threads: 1..256");
    }
    if (flags.labeler_nice < 0 || flags.labeler_nice > 19) {
      return absl::InvalidArgumentError("--labeler_nice: 0..19");
    }
    if (flags.retention < absl::Hours(24)) {
      return absl::InvalidArgumentError("--retention: at least 24h");
    }
    return absl::OkStatus();
  };
  spec.wire = [&flags](ServiceEnv& env) -> absl::StatusOr<ServiceParts> {
    // Owned here; the service parts and their shutdown hooks keep them alive while serving.
    auto repository = std::make_shared<capture::PgCaptureRepository>(&env.pool, &env.logger);
    auto logic = std::make_shared<capture::CaptureLogic>(
        repository.get(),
        capture::CaptureOptions{absl::Seconds(30), flags.retention, flags.user_signals_per_minute});
    capture::LabelerOptions labeler_options;
    labeler_options.nice = flags.labeler_nice;
    auto labeler =
        std::make_shared<capture::Labeler>(repository.get(), &env.logger, labeler_options);
    capture::CaptureHandlerOptions handler_options;
    handler_options.worker_threads = flags.worker_threads;
    ServiceParts parts;
    parts.services.emplace_back(std::make_unique<capture::CaptureServiceHandler>(
                                    &env.authenticator, logic.get(), &env.logger,
                                    [labeler] { labeler->Notify(); }, handler_options),
                                capture::v1::CaptureService::service_full_name());
    if (flags.labeler) labeler->Start();
    parts.on_shutdown.push_back([repository, logic, labeler] { labeler->Stop(); });
    return parts;
  };
  return RunServiceMain(argc, argv, spec);
}
