# Pure parts of the annotation service (rubric, agreement, sampling), the upstream interfaces
# with their gRPC clients and in-memory fakes, and their unit tests. Included by CMakeLists.txt.

# Rubric validation, agreement metrics, sampling: no gRPC, no SQL.
add_library(annotation_parts rubric.cc rubric.h agreement.cc agreement.h sampling.cc sampling.h)
flywheel_warnings(annotation_parts)
target_link_libraries(annotation_parts PUBLIC annotation_proto common_proto flywheel_status
                                              absl::status absl::statusor absl::strings absl::time
                                              absl::flat_hash_map absl::flat_hash_set
                                       PRIVATE flywheel_text)

# Interfaces of capture, clustering and eval-set as the service sees them, and fakes for tests
# (header only; protobuf messages, no gRPC).
add_library(annotation_upstream_api INTERFACE)
target_link_libraries(annotation_upstream_api INTERFACE annotation_proto capture_proto
                                                        clustering_proto evalset_proto
                                                        absl::status absl::statusor absl::time
                                                        absl::strings absl::synchronization)

# gRPC clients of the upstream services (service key + project, deadline per call).
add_library(annotation_upstream upstream_grpc.cc upstream_grpc.h)
flywheel_warnings(annotation_upstream)
target_link_libraries(annotation_upstream PUBLIC annotation_upstream_api flywheel_auth_client
                                                 flywheel_grpc_status gRPC::grpc++
                                          PRIVATE annotation_parts flywheel_text absl::str_format)

flywheel_test(NAME annotation_rubric_test LABEL unit SOURCES rubric_test.cc
              DEPS annotation_parts flywheel_status_matchers)
flywheel_test(NAME annotation_agreement_test LABEL unit SOURCES agreement_test.cc
              DEPS annotation_parts flywheel_status_matchers)
flywheel_test(NAME annotation_sampling_test LABEL unit SOURCES sampling_test.cc
              DEPS annotation_parts flywheel_status_matchers)
flywheel_test(NAME annotation_upstream_test LABEL unit SOURCES upstream_test.cc
              DEPS annotation_upstream annotation_parts flywheel_status_matchers)
