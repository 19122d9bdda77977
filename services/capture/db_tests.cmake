flywheel_test(NAME capture_dbtest LABEL db SOURCES capture_dbtest.cc
              DEPS capture_logic capture_pg flywheel_status_matchers)
flywheel_test(NAME capture_grpc_dbtest LABEL db SOURCES capture_grpc_dbtest.cc
              DEPS capture_handler capture_pg flywheel_auth_pg flywheel_status_matchers)
