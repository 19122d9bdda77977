# The throwaway Postgres of this build tree (see tests/CMakeLists.txt): unix socket only, in a
# directory the "postgres" user can reach even when the build tree is private.
string(MD5 flywheel_build_hash "${PROJECT_BINARY_DIR}")
string(SUBSTRING "${flywheel_build_hash}" 0 10 flywheel_build_hash)
set(FLYWHEEL_TEST_PG_DIR "/tmp/flywheel-testpg-${flywheel_build_hash}")
set(FLYWHEEL_TEST_PG_CONNINFO "host=${FLYWHEEL_TEST_PG_DIR} port=5432 user=postgres dbname=postgres")

# flywheel_test(NAME <name> SOURCES <files> DEPS <targets> LABEL unit|db|e2e)
# db and e2e tests require the throwaway Postgres fixture (tests/CMakeLists.txt), which exports
# FLYWHEEL_TEST_PG (a libpq connection string to the maintenance database) to them.
function(flywheel_test)
  cmake_parse_arguments(ARG "" "NAME;LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  flywheel_warnings(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABEL STREQUAL "db" OR ARG_LABEL STREQUAL "e2e")
    target_link_libraries(${ARG_NAME} PRIVATE flywheel_test_pg)
    set_tests_properties(${ARG_NAME} PROPERTIES
      FIXTURES_REQUIRED "pg;pg_template"
      ENVIRONMENT "FLYWHEEL_TEST_PG=${FLYWHEEL_TEST_PG_CONNINFO};FLYWHEEL_BIN_DIR=${PROJECT_BINARY_DIR}/bin")
  endif()
endfunction()
