#include "bench/clustering/synthetic_failures.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "services/clustering/engine/random.h"

namespace flywheel::clustering::bench {
namespace {

struct Theme {
  const char* name;
  std::vector<const char*> inputs;
  std::vector<const char*> outputs;
  std::vector<const char*> comments;
};

const std::vector<Theme>& Themes() {
  static const auto* const kThemes = new std::vector<Theme>{
      {"refund amount wrong",
       {"I returned the {product} last week, how much will my refund be?",
        "Why is my refund for order {num} only {num} dollars?",
        "Can you check the refund amount for my {product} return",
        "the refund you calculated for order {id} does not match my receipt"},
       {"Your refund will be {num} dollars, which includes the shipping fee",
        "Based on your order, the refund amount is {num} EUR",
        "I have calculated a refund of {num} for the {product}"},
       {"wrong refund amount, I paid {num} not that", "the refund math is wrong",
        "it forgot the discount, refund total incorrect", "amount is off by {num}"}},
      {"refund policy hallucinated",
       {"What is your return policy for a {product} bought {num} days ago?",
        "Can I still return my {product} after {num} days?",
        "Do you refund opened {product} items?", "policy question: returning a used {product}"},
       {"Our policy allows returns within {num} days for a full refund, no questions asked",
        "Yes, we offer a lifetime return guarantee on every {product}",
        "According to our policy, opened items are always refundable"},
       {"this policy does not exist, it made it up", "invented a lifetime guarantee we never offer",
        "made-up return policy, legal will not like this", "hallucinated policy terms"}},
      {"password reset loop",
       {"I can't log in, the password reset link keeps sending me back to the login page",
        "password reset email link expired again for {person}",
        "reset my password please, the link at {url} loops",
        "after resetting my password I still cannot sign in"},
       {"To reset your password, click Forgot password on the login page",
        "Please follow the reset link we sent to your email",
        "You can reset your password from the account settings"},
       {"useless, I already did that, the reset link loops",
        "same generic reset instructions again", "did not help with the login loop",
        "ignores that the reset link is broken"}},
      {"account locked two-factor",
       {"my account got locked after two-factor authentication failed",
        "lost my phone, how do I get past 2FA on account {id}",
        "two-factor codes are rejected and now the account is locked",
        "authenticator app changed, locked out of my account"},
       {"For security reasons we cannot disable two-factor authentication",
        "Please enter the 6-digit code from your authenticator app",
        "Your account will unlock automatically in {num} hours"},
       {"no recovery path offered for lost 2FA device", "locked out, answer gives no way back in",
        "it just repeats enter the code", "needs a real account recovery option"}},
      {"python traceback not fixed",
       {"I get a KeyError traceback in my python script at line {num}, how to fix?",
        "python throws TypeError: unsupported operand in function parse_{num}",
        "fix this exception: AttributeError 'NoneType' object has no attribute 'split'",
        "my pandas dataframe code raises ValueError when merging"},
       {"The error means the key does not exist. Try wrapping the code in try/except",
        "You can fix it by converting the variable to a string first",
        "Here is the corrected function: def parse(data): return data.split()"},
       {"the fix still raises the same exception", "suggested code does not run",
        "just wraps it in try/except, not a real fix", "traceback persists after the change"}},
      {"sql query wrong results",
       {"write a SQL query to get the top {num} customers by revenue from the orders table",
        "my SQL join returns duplicate rows, can you fix the query",
        "postgres query: count orders per month for {num}",
        "GROUP BY query gives wrong totals in mysql"},
       {"SELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id LIMIT {num}",
        "Use a LEFT JOIN on the customers table to avoid duplicates",
        "Here is the query: SELECT date_trunc('month', created_at), count(*) FROM orders"},
       {"query double counts because of the join", "wrong totals, the sql ignores refunds",
        "the query does not even parse in postgres", "sql returns duplicates still"}},
      {"translation wrong language",
       {"translate this paragraph into {lang} please: our store opens at {num}",
        "can you translate the product description to {lang}",
        "I need this email in {lang}, formal tone",
        "translate 'thank you for your order' to {lang}"},
       {"Here is the translation: Thank you for your order, it opens at {num}",
        "Voici la traduction de votre texte", "Translated text: Gracias por su pedido"},
       {"translated into the wrong language", "answered in English instead of {lang}",
        "it mixed two languages in the translation", "not {lang} at all"}},
      {"recipe unsafe cooking",
       {"how long should I cook chicken breast in the oven at {num} degrees",
        "recipe for homemade canned garlic in oil", "is it okay to eat pork medium rare",
        "bake time for a stuffed turkey of {num} kg"},
       {"Cook the chicken for {num} minutes until slightly pink inside",
        "Simply store the garlic in oil at room temperature for weeks",
        "Pork is safe to eat rare like beef"},
       {"unsafe food advice, undercooked chicken", "botulism risk, this recipe is dangerous",
        "food safety problem in the answer", "this could make people sick"}},
      {"flight booking hallucination",
       {"find me a flight from {city} to {city} next Tuesday under {num} dollars",
        "what time does the flight from {city} leave tomorrow",
        "book the cheapest flight to {city} for {person}",
        "is there a direct flight between {city} and {city}"},
       {"Flight AB{num} departs {city} at 7:45 and costs {num} dollars",
        "I have booked your flight to {city}, confirmation code {id}",
        "There is a direct flight every day at {num}"},
       {"made up flight numbers", "it claimed it booked a flight but it cannot book anything",
        "fake confirmation code", "this flight does not exist"}},
      {"hotel booking wrong dates",
       {"book a hotel in {city} from the {num}th to the {num}th",
        "change my hotel reservation {id} to next weekend",
        "hotel near the {city} conference center for {num} nights",
        "cancel my hotel booking in {city} and rebook for friday"},
       {"Your hotel in {city} is reserved from the {num}th for {num} nights",
        "I have changed your reservation {id}",
        "The hotel booking has been moved to the new dates"},
       {"wrong dates on the hotel booking", "it booked one night instead of {num}",
        "reservation dates shifted by a day", "check-in date is wrong"}},
      {"code refactor broke tests",
       {"refactor this javascript function to use async await",
        "clean up my typescript class and remove duplication",
        "rewrite the loop in my react component with map",
        "simplify this nested callback code in node"},
       {"Here is the refactored code using async/await", "I removed the duplicated methods",
        "The component now uses map instead of the loop"},
       {"refactor broke the unit tests", "changed behaviour, tests fail now",
        "the rewritten code drops an edge case", "tests red after applying this"}},
      {"answer too long verbose",
       {"summarize this article in two sentences: {url}",
        "give me a one line answer: what is {product}", "tl;dr of the meeting notes please",
        "briefly, what does this error code {num} mean"},
       {"Certainly! Let me provide a comprehensive overview. First, it is important to understand",
        "Great question! There are many aspects to consider here, starting with the history",
        "Sure, here is a detailed explanation in several sections"},
       {"way too long, I asked for two sentences", "verbose, ignores the length limit",
        "wall of text instead of a summary", "asked for one line, got an essay"}},
      {"medical dosage refusal",
       {"what is the maximum daily dose of ibuprofen for an adult",
        "can I take paracetamol with {product}", "how many mg of melatonin is safe",
        "is it safe to double my allergy medication dose"},
       {"I'm sorry, but I can't provide medical advice. Please consult a doctor",
        "I am not able to answer questions about medication",
        "As an AI I cannot help with dosage questions"},
       {"refused a basic dosage question that is on the package leaflet",
        "over-refusal, this is public information", "should answer the standard dose",
        "useless refusal"}},
      {"invoice pdf export broken",
       {"export my invoices from {num} as a PDF", "download invoice {id} as pdf",
        "the invoice PDF link at {url} is broken", "generate a pdf of all invoices this year"},
       {"You can download your invoice PDF here: {url}",
        "I have generated the PDF export of your invoices",
        "The invoice PDF is attached to this message"},
       {"pdf link is dead", "no pdf was attached", "invoice export link returns an error",
        "claimed to attach a pdf but nothing"}},
      {"math arithmetic error",
       {"what is {num} times {num}", "calculate the compound interest on {num} at {num} percent",
        "split a bill of {num} dollars between {num} people with tip",
        "what percentage is {num} of {num}"},
       {"{num} times {num} equals {num}", "The compound interest after {num} years is {num}",
        "Each person pays {num} dollars"},
       {"arithmetic is wrong", "basic multiplication error", "the percentage is miscalculated",
        "wrong math, check the numbers"}},
      {"shipping tracking outdated",
       {"where is my package, tracking number {id}", "my {product} shipment has not moved in days",
        "track order {num} please", "delivery status for parcel {id}"},
       {"Your package is out for delivery and will arrive today",
        "The shipment {id} was delivered yesterday",
        "According to tracking, your order is in transit"},
       {"tracking info is outdated, it says delivered but nothing arrived", "status is days old",
        "wrong delivery status", "it never checked the live tracking"}},
      {"legal contract advice risky",
       {"can my landlord keep my deposit if I leave {num} days early",
        "review this NDA clause for me", "is a verbal contract binding in {city}",
        "can I break my employment contract without notice"},
       {"Yes, your landlord can keep the whole deposit in all cases",
        "This NDA clause is standard and safe to sign", "Verbal contracts are never binding"},
       {"overconfident legal advice, wrong for this jurisdiction", "no caveat to ask a lawyer",
        "legal answer is incorrect", "it says never binding which is false"}},
      {"wrong product specs",
       {"what is the battery life of the {product}", "does the {product} support usb-c charging",
        "compare the {product} and the {product} screen size", "how much does the {product} weigh"},
       {"The {product} has a battery life of {num} hours", "Yes, the {product} charges over usb-c",
        "The screen size is {num} inches"},
       {"specs are wrong, battery is much shorter", "incorrect product specifications",
        "it confused two product models", "weight and screen size wrong"}},
  };
  return *kThemes;
}

constexpr const char* kProducts[] = {"AirPods Pro",     "Galaxy S23", "ThinkPad X1", "Kindle",
                                     "Dyson V11",       "iPad mini",  "Pixel 8",     "Instant Pot",
                                     "Nintendo Switch", "Roomba j7"};
constexpr const char* kCities[] = {"Lisbon",  "Chicago", "Osaka",  "Berlin", "Nairobi",
                                   "Toronto", "Madrid",  "Sydney", "Seoul",  "Denver"};
constexpr const char* kLangs[] = {"French",   "German",     "Spanish",
                                  "Japanese", "Portuguese", "Italian"};
constexpr const char* kPeople[] = {"Alice", "Bob", "Chen", "Dana", "Emeka", "Farah"};
constexpr const char* kChatter[] = {"hi",     "hello",          "thanks",    "pls help",
                                    "urgent", "quick question", "hey there", "good morning"};
constexpr const char* kNoise[] = {
    "Also the weather is terrible today.",         "By the way your app is slow on my phone.",
    "I have been a customer for years.",           "My cat walked over the keyboard, sorry.",
    "Not sure if this is the right place to ask.", "Your website looks nice btw."};

template <size_t N>
const char* Pick(const char* const (&items)[N], engine::Rng& rng) {
  return items[rng.Uniform(N)];
}

std::string Fill(const char* tmpl, engine::Rng& rng) {
  std::string out;
  absl::string_view t = tmpl;
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] == '{') {
      size_t close = t.find('}', i);
      absl::string_view slot = t.substr(i + 1, close - i - 1);
      if (slot == "product") {
        out.append(Pick(kProducts, rng));
      } else if (slot == "num") {
        out.append(absl::StrCat(1 + rng.Uniform(rng.Uniform(2) == 0 ? 100 : 5000)));
      } else if (slot == "id") {
        out.append(absl::StrCat("ord_", absl::Hex(rng.Next() & 0xFFFFFFFFFFULL)));
      } else if (slot == "url") {
        out.append(absl::StrCat("https://example.com/d/", rng.Uniform(100000)));
      } else if (slot == "lang") {
        out.append(Pick(kLangs, rng));
      } else if (slot == "city") {
        out.append(Pick(kCities, rng));
      } else if (slot == "person") {
        out.append(Pick(kPeople, rng));
      } else {
        out.append(slot.data(), slot.size());
      }
      i = close + 1;
    } else {
      out.push_back(t[i++]);
    }
  }
  return out;
}

template <typename T>
const T& PickFrom(const std::vector<T>& items, engine::Rng& rng) {
  return items[rng.Uniform(items.size())];
}

}  // namespace

int SyntheticThemeCount() { return static_cast<int>(Themes().size()); }

std::string SyntheticThemeName(int theme) { return Themes()[theme].name; }

std::vector<SyntheticTrace> GenerateSyntheticTraces(const SyntheticOptions& options) {
  const auto& themes = Themes();
  const int k = static_cast<int>(themes.size());
  // Fixed unequal weights: theme t has weight 1 / (1 + t / 4) (a mild long tail).
  std::vector<double> weights(k);
  for (int t = 0; t < k; ++t) weights[t] = 1.0 / (1.0 + t / 4.0);
  engine::Rng rng(options.seed);
  std::vector<SyntheticTrace> traces;
  traces.reserve(options.count);
  for (int i = 0; i < options.count; ++i) {
    bool second_half = i >= options.count / 2;
    int active = (options.late_themes_from >= 0 && !second_half) ? options.late_themes_from : k;
    double total = 0;
    for (int t = 0; t < active; ++t) total += weights[t];
    double target = rng.UniformDouble() * total;
    int theme = active - 1;
    for (int t = 0; t < active; ++t) {
      target -= weights[t];
      if (target < 0) {
        theme = t;
        break;
      }
    }
    const Theme& spec = themes[theme];
    SyntheticTrace trace;
    trace.theme = theme;
    std::string input = Fill(PickFrom(spec.inputs, rng), rng);
    if (rng.Uniform(3) == 0) input = absl::StrCat(Pick(kChatter, rng), ", ", input);
    if (rng.UniformDouble() < options.noise_probability) {
      absl::StrAppend(&input, " ", Pick(kNoise, rng));
    }
    trace.text.input = std::move(input);
    trace.text.output = Fill(PickFrom(spec.outputs, rng), rng);
    if (rng.UniformDouble() < options.comment_probability) {
      trace.text.comments.push_back(Fill(PickFrom(spec.comments, rng), rng));
    }
    traces.push_back(std::move(trace));
  }
  return traces;
}

}  // namespace flywheel::clustering::bench
