flywheel_test(NAME capture_dbtest LABEL db SOURCES capture_dbtest.cc
              DEPS capture_logic capture_pg flywheel_status_matchers)
