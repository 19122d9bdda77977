flywheel_test(NAME capture_failure_e2etest LABEL e2e TIMEOUT 300 SOURCES capture_failure_e2etest.cc
              DEPS flywheel_e2e_support capture_proto flywheel_auth_pg flywheel_status_matchers)
add_dependencies(capture_failure_e2etest flywheel-capture flywheel)
# The test starts its own Postgres cluster with scripts/pg.sh.
target_compile_definitions(capture_failure_e2etest PRIVATE FLYWHEEL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
