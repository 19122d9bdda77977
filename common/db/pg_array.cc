#include "common/db/pg_array.h"

namespace flywheel::db {

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string ByteaArray(const std::vector<std::string>& values) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t size = 2;
  for (const std::string& value : values) size += 2 * value.size() + 6;
  std::string out;
  out.reserve(size);
  out += '{';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += "\"\\\\x";  // "\\x...": the array parser turns \\ into \, bytea reads \x as hex
    for (unsigned char c : values[i]) {
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace flywheel::db
