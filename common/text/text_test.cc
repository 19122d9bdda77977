#include "common/text/text.h"

#include <gtest/gtest.h>

namespace flywheel::text {
namespace {

TEST(TokenizeTest, LowercasesAndSplitsOnPunctuation) {
  EXPECT_EQ(Tokenize("Hello, World! It's 2026."),
            (std::vector<std::string>{"hello", "world", "it", "s", "2026"}));
  EXPECT_EQ(Tokenize("  "), std::vector<std::string>{});
  EXPECT_EQ(Tokenize("naïve café"), (std::vector<std::string>{"naïve", "café"}));
}

TEST(NormalizeTest, IgnoresCaseSpacingAndPunctuation) {
  EXPECT_EQ(Normalize("How do I  reset my PASSWORD?"), Normalize("how do i reset my password"));
  EXPECT_NE(Normalize("reset password"), Normalize("reset my password"));
}

TEST(NgramCosineTest, RephrasesScoreHighUnrelatedTextLow) {
  const double rephrase =
      NgramCosine("how do I reset my password", "how can I reset my account password");
  const double unrelated = NgramCosine("how do I reset my password", "best pizza in naples");
  EXPECT_GE(rephrase, 0.7);
  EXPECT_LT(unrelated, 0.3);
  EXPECT_DOUBLE_EQ(NgramCosine("same text", "same text"), 1.0);
  EXPECT_EQ(NgramCosine("", "x"), 0.0);
}

TEST(EditDistanceTest, CountsTokenEditsOverTheLongerText) {
  EXPECT_DOUBLE_EQ(NormalizedTokenEditDistance("a b c d", "a b c d"), 0.0);
  EXPECT_DOUBLE_EQ(NormalizedTokenEditDistance("a b c d", "a x c d"), 0.25);
  EXPECT_DOUBLE_EQ(NormalizedTokenEditDistance("a b c d", "a b c d e f g h"), 0.5);
  EXPECT_DOUBLE_EQ(NormalizedTokenEditDistance("a b", "x y"), 1.0);
  EXPECT_DOUBLE_EQ(NormalizedTokenEditDistance("", ""), 0.0);
}

TEST(Utf8Test, RejectsMalformedSequences) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

TEST(Utf8Test, TruncatesOnCodePointBoundaries) {
  EXPECT_EQ(TruncateUtf8("caf\xc3\xa9", 4), "caf");
  EXPECT_EQ(TruncateUtf8("caf\xc3\xa9", 5), "caf\xc3\xa9");
  EXPECT_EQ(CodePointCount("caf\xc3\xa9"), 4u);
}

}  // namespace
}  // namespace flywheel::text
