#include "services/clustering/engine/openai.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "services/clustering/engine/json.h"

namespace flywheel::clustering::engine {
namespace {

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  constexpr size_t kMaxBody = 256u << 20;
  if (body->size() + size * count > kMaxBody) return 0;  // aborts the transfer
  body->append(data, size * count);
  return size * count;
}

// Cuts to at most `max_bytes` on a UTF-8 boundary.
std::string CutUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

// The error message an OpenAI-compatible server put in its body, if any.
std::string ServerMessage(const std::string& body) {
  auto parsed = json::Parse(body);
  if (parsed.ok()) {
    if (const json::Value* error = parsed->Find("error")) {
      if (const json::Value* message = error->Find("message");
          message != nullptr && message->type == json::Value::Type::kString) {
        return CutUtf8(message->string, 200);
      }
      if (error->type == json::Value::Type::kString) return CutUtf8(error->string, 200);
    }
  }
  return CutUtf8(body, 200);
}

// POSTs a JSON body to base_url + path with retries. Returns the 2xx response body.
absl::StatusOr<std::string> PostJson(const OpenAiEndpoint& endpoint, absl::string_view path,
                                     const std::string& body) {
  InitCurlOnce();
  std::string url = absl::StrCat(absl::StripSuffix(endpoint.base_url, "/"), path);
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint URL must be http(s): ", url));
  }
  absl::Status last = absl::UnavailableError("not attempted");
  absl::Duration backoff = endpoint.retry_backoff;
  for (int attempt = 0; attempt <= std::max(0, endpoint.max_retries); ++attempt) {
    if (attempt > 0) {
      absl::SleepFor(backoff);
      backoff *= 2;
    }
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    std::string authorization;
    if (!endpoint.api_key.empty()) {
      authorization = absl::StrCat("Authorization: Bearer ", endpoint.api_key);
      headers = curl_slist_append(headers, authorization.c_str());
    }
    std::string response;
    long timeout_ms = std::max<long>(1, absl::ToInt64Milliseconds(endpoint.timeout));
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min<long>(timeout_ms, 10000));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode code = curl_easy_perform(curl);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
      last = absl::UnavailableError(
          absl::StrCat("endpoint ", url, " is unavailable: ", curl_easy_strerror(code)));
      continue;
    }
    if (http_status >= 200 && http_status < 300) return response;
    std::string message = ServerMessage(response);
    if (http_status == 429 || http_status >= 500) {
      last = absl::UnavailableError(
          absl::StrCat("endpoint ", url, " answered HTTP ", http_status, ": ", message));
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "endpoint ", url, " rejected the request with HTTP ", http_status, ": ", message));
  }
  return absl::Status(
      last.code(), absl::StrCat(last.message(), " (after ", std::max(0, endpoint.max_retries) + 1,
                                " attempts)"));
}

absl::Status BadResponse(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("unexpected endpoint response: ", what));
}

}  // namespace

OpenAiEmbedder::OpenAiEmbedder(OpenAiEmbedderOptions options) : options_(std::move(options)) {}
OpenAiEmbedder::~OpenAiEmbedder() = default;

std::string OpenAiEmbedder::Id() const {
  std::string id = absl::StrCat("openai-compatible:", options_.endpoint.model);
  if (options_.dimension > 0) absl::StrAppend(&id, ":", options_.dimension);
  return id;
}

int OpenAiEmbedder::Dimension() const {
  return options_.dimension > 0 ? options_.dimension : observed_dimension_.load();
}

absl::StatusOr<std::vector<Vector>> OpenAiEmbedder::Embed(const std::vector<std::string>& texts) {
  std::vector<Vector> out(texts.size());
  std::vector<int> pending;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!texts[i].empty()) pending.push_back(static_cast<int>(i));
  }
  const size_t batch = static_cast<size_t>(std::max(1, options_.batch_size));
  for (size_t begin = 0; begin < pending.size(); begin += batch) {
    size_t end = std::min(pending.size(), begin + batch);
    std::string body = absl::StrCat("{\"model\":", json::Quote(options_.endpoint.model),
                                    ",\"encoding_format\":\"float\"");
    if (options_.dimension > 0) absl::StrAppend(&body, ",\"dimensions\":", options_.dimension);
    body.append(",\"input\":[");
    for (size_t i = begin; i < end; ++i) {
      if (i > begin) body.push_back(',');
      body.append(json::Quote(texts[pending[i]]));
    }
    body.append("]}");
    auto response = PostJson(options_.endpoint, "/embeddings", body);
    if (!response.ok()) return response.status();
    auto parsed = json::Parse(*response);
    if (!parsed.ok()) return BadResponse("body is not JSON");
    const json::Value* data = parsed->Find("data");
    if (data == nullptr || data->type != json::Value::Type::kArray) {
      return BadResponse("no \"data\" array");
    }
    if (data->array.size() != end - begin) {
      return BadResponse(
          absl::StrCat(data->array.size(), " embeddings for ", end - begin, " inputs"));
    }
    std::vector<bool> filled(end - begin, false);
    for (size_t j = 0; j < data->array.size(); ++j) {
      const json::Value& item = data->array[j];
      size_t index = j;
      if (const json::Value* idx = item.Find("index")) {
        if (idx->type != json::Value::Type::kNumber || idx->number < 0 ||
            idx->number >= static_cast<double>(end - begin)) {
          return BadResponse("bad \"index\"");
        }
        index = static_cast<size_t>(idx->number);
      }
      if (filled[index]) return BadResponse("duplicate \"index\"");
      filled[index] = true;
      const json::Value* embedding = item.Find("embedding");
      if (embedding == nullptr || embedding->type != json::Value::Type::kArray ||
          embedding->array.empty()) {
        return BadResponse("no \"embedding\" array");
      }
      Vector v;
      v.reserve(embedding->array.size());
      for (const json::Value& x : embedding->array) {
        if (x.type != json::Value::Type::kNumber) return BadResponse("non-numeric embedding");
        v.push_back(static_cast<float>(x.number));
      }
      int expected = Dimension();
      if (expected > 0 && static_cast<int>(v.size()) != expected) {
        return BadResponse(
            absl::StrCat("embedding of dimension ", v.size(), ", expected ", expected));
      }
      observed_dimension_.store(static_cast<int>(v.size()));
      NormalizeInPlace(v);
      out[pending[begin + index]] = std::move(v);
    }
  }
  const int dimension = Dimension();
  for (Vector& v : out) {
    if (v.empty()) v.assign(dimension, 0.0f);
  }
  return out;
}

ChatNamer::ChatNamer(OpenAiEndpoint endpoint) : endpoint_(std::move(endpoint)) {}

std::string ChatNamer::Id() const { return absl::StrCat("openai-compatible:", endpoint_.model); }

absl::StatusOr<NamingResult> ChatNamer::Name(const NamingRequest& request) const {
  std::string prompt = absl::StrCat(
      "Below are user requests to an AI assistant that failed (bad answers, complaints). They "
      "belong to one theme. Name the theme: what the users wanted and what went wrong, in at most "
      "8 words, and describe it in one sentence. The name must distinguish the theme from the "
      "nearby other themes shown after it.\n\nKeywords: ",
      absl::StrJoin(request.keywords, ", "), "\n\nExamples from the theme:\n");
  for (size_t i = 0; i < request.in_theme_examples.size(); ++i) {
    absl::StrAppend(&prompt, i + 1, ". ", CutUtf8(request.in_theme_examples[i], 600), "\n");
  }
  if (!request.out_of_theme_examples.empty()) {
    prompt.append("\nExamples from nearby OTHER themes (do not describe these):\n");
    for (size_t i = 0; i < request.out_of_theme_examples.size(); ++i) {
      absl::StrAppend(&prompt, "- ", CutUtf8(request.out_of_theme_examples[i], 300), "\n");
    }
  }
  absl::StrAppend(&prompt, "\nAnswer in the language with BCP-47 tag \"", request.language,
                  "\" with only a JSON object: {\"name\": \"...\", \"description\": \"...\"}");
  std::string body = absl::StrCat(
      "{\"model\":", json::Quote(endpoint_.model),
      ",\"temperature\":0,\"messages\":[{\"role\":\"system\",\"content\":",
      json::Quote("You label clusters of failing AI-assistant conversations for an operator. "
                  "Reply with JSON only."),
      "},{\"role\":\"user\",\"content\":", json::Quote(prompt), "}]}");
  auto response = PostJson(endpoint_, "/chat/completions", body);
  if (!response.ok()) return response.status();
  auto parsed = json::Parse(*response);
  if (!parsed.ok()) return BadResponse("body is not JSON");
  const json::Value* choices = parsed->Find("choices");
  if (choices == nullptr || choices->type != json::Value::Type::kArray || choices->array.empty()) {
    return BadResponse("no \"choices\"");
  }
  const json::Value* message = choices->array[0].Find("message");
  const json::Value* content = message != nullptr ? message->Find("content") : nullptr;
  if (content == nullptr || content->type != json::Value::Type::kString) {
    return BadResponse("no message content");
  }
  // Tolerate code fences and text around the object.
  absl::string_view text = content->string;
  size_t open = text.find('{');
  size_t close = text.rfind('}');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
    return BadResponse("content holds no JSON object");
  }
  auto answer = json::Parse(text.substr(open, close - open + 1));
  if (!answer.ok()) return BadResponse("content is not a JSON object");
  const json::Value* name = answer->Find("name");
  const json::Value* description = answer->Find("description");
  if (name == nullptr || name->type != json::Value::Type::kString ||
      absl::StripAsciiWhitespace(name->string).empty()) {
    return BadResponse("no name");
  }
  NamingResult result;
  result.name = CutUtf8(absl::StripAsciiWhitespace(name->string), 80);
  while (!result.name.empty() && result.name.back() == '.') result.name.pop_back();
  if (description != nullptr && description->type == json::Value::Type::kString) {
    std::string line = absl::StrReplaceAll(description->string, {{"\r", " "}, {"\n", " "}});
    result.description = CutUtf8(absl::StripAsciiWhitespace(line), 400);
  }
  return result;
}

}  // namespace flywheel::clustering::engine
