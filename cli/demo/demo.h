#pragma once

#include <string>

#include "absl/time/time.h"

namespace flywheel::demo {

struct DemoOptions {
  std::string capture_address = "127.0.0.1:50051";
  std::string clustering_address = "127.0.0.1:50052";
  std::string annotation_address = "127.0.0.1:50053";
  std::string evalset_address = "127.0.0.1:50054";
  // A secret key of the demo project with every scope but admin (ingest, read, review, eval) or
  // admin (implies all).
  std::string api_key;
  uint64_t seed = 7;
  // Ids are "<run_id>-trace-<seed>-<n>"...; empty: "demo-<UTC time>" (new traffic every run).
  std::string run_id;
  int users = 300;
  // How long to wait for each asynchronous step (labels, themes, queue fill, promotion).
  absl::Duration step_timeout = absl::Minutes(3);
  // Also write the figures as one JSON object here (for tests and scripts); empty: none.
  std::string json_path;
  bool quiet = false;
  // The simulated reviewer stops after this many items.
  int max_reviews = 60;
};

// Runs the whole loop on a simulated product through the public gRPC APIs and prints what
// happened. Returns a process exit code: 0 when every step completed, 1 when a service failed or
// a step timed out (the message says which), 2 for bad options.
int RunDemo(const DemoOptions& options);

}  // namespace flywheel::demo
