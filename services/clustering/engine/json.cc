#include "services/clustering/engine/json.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flywheel::clustering::engine::json {
namespace {

class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<Value> ParseDocument() {
    Value value;
    if (!ParseValue(value, 0)) return Error();
    SkipSpace();
    if (pos_ != text_.size()) {
      error_ = "trailing characters";
      return Error();
    }
    return value;
  }

 private:
  absl::Status Error() const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed JSON at offset ", pos_, ": ", error_));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && std::strchr(" \t\r\n", text_[pos_]) != nullptr && text_[pos_]) {
      ++pos_;
    }
  }
  bool Literal(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) {
      error_ = "unexpected token";
      return false;
    }
    pos_ += word.size();
    return true;
  }
  bool ParseValue(Value& out, int depth) {
    if (depth > 64) {
      error_ = "nesting too deep";
      return false;
    }
    SkipSpace();
    if (pos_ >= text_.size()) {
      error_ = "unexpected end";
      return false;
    }
    char c = text_[pos_];
    switch (c) {
      case 'n':
        out.type = Value::Type::kNull;
        return Literal("null");
      case 't':
        out.type = Value::Type::kBool;
        out.boolean = true;
        return Literal("true");
      case 'f':
        out.type = Value::Type::kBool;
        out.boolean = false;
        return Literal("false");
      case '"':
        out.type = Value::Type::kString;
        return ParseString(out.string);
      case '[': {
        out.type = Value::Type::kArray;
        ++pos_;
        SkipSpace();
        if (pos_ < text_.size() && text_[pos_] == ']') {
          ++pos_;
          return true;
        }
        while (true) {
          out.array.emplace_back();
          if (!ParseValue(out.array.back(), depth + 1)) return false;
          SkipSpace();
          if (pos_ < text_.size() && text_[pos_] == ',') {
            ++pos_;
            continue;
          }
          if (pos_ < text_.size() && text_[pos_] == ']') {
            ++pos_;
            return true;
          }
          error_ = "expected , or ]";
          return false;
        }
      }
      case '{': {
        out.type = Value::Type::kObject;
        ++pos_;
        SkipSpace();
        if (pos_ < text_.size() && text_[pos_] == '}') {
          ++pos_;
          return true;
        }
        while (true) {
          SkipSpace();
          std::string key;
          if (pos_ >= text_.size() || text_[pos_] != '"' || !ParseString(key)) {
            if (error_.empty()) error_ = "expected a key";
            return false;
          }
          SkipSpace();
          if (pos_ >= text_.size() || text_[pos_] != ':') {
            error_ = "expected :";
            return false;
          }
          ++pos_;
          out.object.emplace_back(std::move(key), Value());
          if (!ParseValue(out.object.back().second, depth + 1)) return false;
          SkipSpace();
          if (pos_ < text_.size() && text_[pos_] == ',') {
            ++pos_;
            continue;
          }
          if (pos_ < text_.size() && text_[pos_] == '}') {
            ++pos_;
            return true;
          }
          error_ = "expected , or }";
          return false;
        }
      }
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
        error_ = "unexpected character";
        return false;
    }
  }
  bool ParseNumber(Value& out) {
    size_t start = pos_;
    while (pos_ < text_.size() && std::strchr("+-0123456789.eE", text_[pos_]) != nullptr &&
           text_[pos_]) {
      ++pos_;
    }
    std::string number(text_.substr(start, pos_ - start));
    char* end = nullptr;
    out.type = Value::Type::kNumber;
    out.number = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size() || number.empty()) {
      error_ = "bad number";
      return false;
    }
    return true;
  }
  bool Hex4(uint32_t& out) {
    if (text_.size() - pos_ < 4) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      out <<= 4;
      if (c >= '0' && c <= '9') {
        out |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        out |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        out |= c - 'A' + 10;
      } else {
        return false;
      }
    }
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool ParseString(std::string& out) {
    ++pos_;  // opening quote
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) break;
      char e = text_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(cp)) {
            error_ = "bad \\u escape";
            return false;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && text_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            uint32_t low;
            if (!Hex4(low) || low < 0xDC00 || low > 0xDFFF) {
              error_ = "bad surrogate pair";
              return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          error_ = "bad escape";
          return false;
      }
    }
    error_ = "unterminated string";
    return false;
  }

  absl::string_view text_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

const Value* Value::Find(absl::string_view key) const {
  if (type != Type::kObject) return nullptr;
  for (const auto& [k, v] : object) {
    if (k == key) return &v;
  }
  return nullptr;
}

absl::StatusOr<Value> Parse(absl::string_view text) { return Parser(text).ParseDocument(); }

std::string Quote(absl::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  for (char c : text) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out.append(absl::StrFormat("\\u%04x", static_cast<unsigned char>(c)));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace flywheel::clustering::engine::json
