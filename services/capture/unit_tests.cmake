# Unit tier: pure logic (validation, redaction, labeling); no database, no network.
flywheel_test(NAME capture_validation_test LABEL unit SOURCES validation_test.cc
              DEPS capture_logic flywheel_status_matchers)
flywheel_test(NAME capture_redaction_test LABEL unit SOURCES redaction_test.cc
              DEPS capture_logic flywheel_status_matchers)
flywheel_test(NAME capture_labeling_test LABEL unit SOURCES labeling_test.cc
              DEPS capture_logic flywheel_status_matchers)
