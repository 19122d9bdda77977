// Error paths and happy paths of the OpenAI-compatible clients against a tiny local HTTP server.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/clustering/engine/json.h"
#include "services/clustering/engine/openai.h"

namespace flywheel::clustering::engine {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::HasSubstr;

struct Request {
  std::string head;
  std::string body;
};

// Serves each connection with `handler(request) -> (status, body)` on 127.0.0.1:<port>.
class TinyServer {
 public:
  using Handler = std::function<std::pair<int, std::string>(const Request&)>;
  explicit TinyServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~TinyServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string Url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1"); }
  int requests() const { return requests_.load(); }
  std::vector<Request> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  void Loop() {
    while (!stop_) {
      int client = accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      std::string data;
      char buf[4096];
      size_t header_end = std::string::npos;
      size_t content_length = 0;
      while (true) {
        ssize_t n = read(client, buf, sizeof(buf));
        if (n <= 0) break;
        data.append(buf, n);
        if (header_end == std::string::npos) {
          header_end = data.find("\r\n\r\n");
          if (header_end != std::string::npos) {
            std::string lower = data.substr(0, header_end);
            for (char& c : lower) c = static_cast<char>(tolower(c));
            size_t cl = lower.find("content-length:");
            if (cl != std::string::npos) {
              size_t end = lower.find("\r\n", cl);
              std::string value = lower.substr(cl + 15, end - cl - 15);
              size_t parsed = 0;
              while (!value.empty() && value[0] == ' ') value.erase(0, 1);
              if (absl::SimpleAtoi(value, &parsed)) content_length = parsed;
            }
          }
        }
        if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) {
          break;
        }
      }
      ++requests_;
      Request request;
      if (header_end != std::string::npos) {
        request.head = data.substr(0, header_end);
        request.body = data.substr(header_end + 4);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(request);
      }
      auto [status, body] = handler_(request);
      std::string response =
          absl::StrCat("HTTP/1.1 ", status,
                       " X\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                       "\r\nConnection: close\r\n\r\n", body);
      size_t sent = 0;
      while (sent < response.size()) {
        ssize_t n = write(client, response.data() + sent, response.size() - sent);
        if (n <= 0) break;
        sent += n;
      }
      close(client);
    }
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::vector<Request> received_;
  std::thread thread_;
};

OpenAiEmbedderOptions Options(const std::string& url) {
  OpenAiEmbedderOptions options;
  options.endpoint.base_url = url;
  options.endpoint.model = "test-embed";
  options.endpoint.api_key = "sk-secret";
  options.endpoint.timeout = absl::Seconds(2);
  options.endpoint.max_retries = 1;
  options.endpoint.retry_backoff = absl::Milliseconds(10);
  return options;
}

// An embeddings answer with vector (i+1, 1) for input i, in reverse order to test "index".
std::pair<int, std::string> EmbeddingsAnswer(const Request& request) {
  auto parsed = json::Parse(request.body);
  if (!parsed.ok()) return {400, "{\"error\":{\"message\":\"bad json\"}}"};
  const json::Value* input = parsed->Find("input");
  std::string data;
  int n = static_cast<int>(input->array.size());
  for (int i = n - 1; i >= 0; --i) {
    if (!data.empty()) data.push_back(',');
    absl::StrAppend(&data, "{\"index\":", i, ",\"embedding\":[", i + 1, ",1]}");
  }
  return {200, absl::StrCat("{\"object\":\"list\",\"data\":[", data, "]}")};
}

TEST(OpenAiEmbedderTest, EmbedsInBatchesAndNormalizes) {
  TinyServer server(EmbeddingsAnswer);
  OpenAiEmbedderOptions options = Options(server.Url());
  options.batch_size = 2;
  OpenAiEmbedder embedder(options);
  ASSERT_OK_AND_ASSIGN(auto vectors, embedder.Embed({"a", "", "b", "c"}));
  ASSERT_EQ(vectors.size(), 4u);
  EXPECT_NEAR(vectors[0][0], 1 / std::sqrt(2.0f), 1e-6);  // (1,1) normalized
  EXPECT_EQ(vectors[1], (Vector{0, 0}));                  // empty text: not sent, zeros
  EXPECT_NEAR(vectors[2][0], 2 / std::sqrt(5.0f), 1e-6);  // (2,1): second of first batch
  EXPECT_NEAR(vectors[3][0], 1 / std::sqrt(2.0f), 1e-6);  // first of second batch
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(embedder.Dimension(), 2);
  auto received = server.received();
  EXPECT_THAT(received[0].head, HasSubstr("POST /v1/embeddings"));
  EXPECT_THAT(received[0].head, HasSubstr("Authorization: Bearer sk-secret"));
  EXPECT_THAT(received[0].body, HasSubstr("\"model\":\"test-embed\""));
}

TEST(OpenAiEmbedderTest, ClosedPortIsUnavailableWithoutTheKey) {
  int port;
  {
    TinyServer server([](const Request&) { return std::make_pair(200, std::string("{}")); });
    port = std::stoi(server.Url().substr(17, 5));
  }
  OpenAiEmbedder embedder(Options(absl::StrCat("http://127.0.0.1:", port, "/v1")));
  auto result = embedder.Embed({"hello"});
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(result.status().message()), ::testing::Not(HasSubstr("sk-secret")));
}

TEST(OpenAiEmbedderTest, ServerErrorsAreRetriedThenUnavailable) {
  TinyServer server([](const Request&) {
    return std::make_pair(503, std::string("{\"error\":{\"message\":\"overloaded\"}}"));
  });
  OpenAiEmbedder embedder(Options(server.Url()));
  EXPECT_THAT(embedder.Embed({"hello"}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(server.requests(), 2);  // 1 + max_retries
}

TEST(OpenAiEmbedderTest, RetryRecoversFromOneFailure) {
  std::atomic<int> calls{0};
  TinyServer server([&](const Request& r) {
    if (calls++ == 0) return std::make_pair(500, std::string("oops"));
    return EmbeddingsAnswer(r);
  });
  OpenAiEmbedder embedder(Options(server.Url()));
  ASSERT_OK_AND_ASSIGN(auto vectors, embedder.Embed({"hello"}));
  EXPECT_EQ(vectors.size(), 1u);
}

TEST(OpenAiEmbedderTest, ClientErrorsAndBadBodiesAreInvalidArgument) {
  TinyServer rejecting([](const Request&) {
    return std::make_pair(401, std::string("{\"error\":{\"message\":\"bad key\"}}"));
  });
  OpenAiEmbedder a(Options(rejecting.Url()));
  EXPECT_THAT(a.Embed({"x"}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(rejecting.requests(), 1);  // not retried

  TinyServer garbage([](const Request&) { return std::make_pair(200, std::string("<html>")); });
  OpenAiEmbedder b(Options(garbage.Url()));
  EXPECT_THAT(b.Embed({"x"}), StatusIs(absl::StatusCode::kInvalidArgument));

  TinyServer short_answer(
      [](const Request&) { return std::make_pair(200, std::string("{\"data\":[]}")); });
  OpenAiEmbedder c(Options(short_answer.Url()));
  EXPECT_THAT(c.Embed({"x"}), StatusIs(absl::StatusCode::kInvalidArgument));

  TinyServer wrong_dimension(EmbeddingsAnswer);
  OpenAiEmbedderOptions options = Options(wrong_dimension.Url());
  options.dimension = 3;
  OpenAiEmbedder d(options);
  EXPECT_THAT(d.Embed({"x"}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(OpenAiEmbedderTest, TimeoutIsUnavailable) {
  TinyServer slow([](const Request& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    return EmbeddingsAnswer(r);
  });
  OpenAiEmbedderOptions options = Options(slow.Url());
  options.endpoint.timeout = absl::Milliseconds(150);
  options.endpoint.max_retries = 0;
  OpenAiEmbedder embedder(options);
  EXPECT_THAT(embedder.Embed({"x"}), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ChatNamerTest, ParsesNameAndDescriptionAndSendsContrastiveExamples) {
  TinyServer server([](const Request&) {
    return std::make_pair(
        200, std::string("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":"
                         "\"```json\\n{\\\"name\\\": \\\"Refund amount errors.\\\", "
                         "\\\"description\\\": \\\"Users get wrong\\\\nrefunds.\\\"}\\n```\"}}]}"));
  });
  OpenAiEndpoint endpoint = Options(server.Url()).endpoint;
  ChatNamer namer(endpoint);
  NamingRequest request;
  request.keywords = {"refund", "invoice"};
  request.in_theme_examples = {"my refund is wrong"};
  request.out_of_theme_examples = {"password reset fails"};
  ASSERT_OK_AND_ASSIGN(NamingResult result, namer.Name(request));
  EXPECT_EQ(result.name, "Refund amount errors");
  EXPECT_EQ(result.description, "Users get wrong refunds.");
  auto received = server.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_THAT(received[0].head, HasSubstr("POST /v1/chat/completions"));
  EXPECT_THAT(received[0].body, HasSubstr("my refund is wrong"));
  EXPECT_THAT(received[0].body, HasSubstr("password reset fails"));
}

TEST(ChatNamerTest, AnswerWithoutNameIsInvalidArgumentAndDownIsUnavailable) {
  TinyServer server([](const Request&) {
    return std::make_pair(200,
                          std::string("{\"choices\":[{\"message\":{\"content\":\"no idea\"}}]}"));
  });
  ChatNamer namer(Options(server.Url()).endpoint);
  EXPECT_THAT(namer.Name({}), StatusIs(absl::StatusCode::kInvalidArgument));
  OpenAiEndpoint down = Options("http://127.0.0.1:1/v1").endpoint;
  down.max_retries = 0;
  EXPECT_THAT(ChatNamer(down).Name({}), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(JsonTest, ParsesEscapesAndRejectsGarbage) {
  ASSERT_OK_AND_ASSIGN(json::Value v,
                       json::Parse(R"({"a":[1,-2.5e1,true,null],"b":"\u00e9\ud83d\ude00\n"})"));
  ASSERT_NE(v.Find("a"), nullptr);
  EXPECT_EQ(v.Find("a")->array[1].number, -25);
  EXPECT_EQ(v.Find("b")->string, "\xC3\xA9\xF0\x9F\x98\x80\n");
  EXPECT_THAT(json::Parse("{\"a\":1"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(json::Parse("[1] x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(json::Quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

}  // namespace
}  // namespace flywheel::clustering::engine
