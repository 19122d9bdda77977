#include "common/config/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flywheel {

FlagSet::FlagSet(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void FlagSet::Add(std::string name, Type type, void* target, std::string help,
                  std::string default_text) {
  flags_.push_back(Flag{std::move(name), type, target, std::move(help), std::move(default_text)});
}

void FlagSet::String(std::string name, std::string* target, std::string help) {
  Add(std::move(name), Type::kString, target, std::move(help), *target);
}
void FlagSet::Int(std::string name, int* target, std::string help) {
  Add(std::move(name), Type::kInt, target, std::move(help), absl::StrCat(*target));
}
void FlagSet::Int64(std::string name, int64_t* target, std::string help) {
  Add(std::move(name), Type::kInt64, target, std::move(help), absl::StrCat(*target));
}
void FlagSet::Double(std::string name, double* target, std::string help) {
  Add(std::move(name), Type::kDouble, target, std::move(help), absl::StrCat(*target));
}
void FlagSet::Bool(std::string name, bool* target, std::string help) {
  Add(std::move(name), Type::kBool, target, std::move(help), *target ? "true" : "false");
}
void FlagSet::Duration(std::string name, absl::Duration* target, std::string help) {
  Add(std::move(name), Type::kDuration, target, std::move(help), absl::FormatDuration(*target));
}

std::string FlagSet::EnvName(absl::string_view flag_name) {
  std::string env = absl::StrCat("FLYWHEEL_", flag_name);
  for (char& c : env) c = c == '-' ? '_' : absl::ascii_toupper(c);
  return env;
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status FlagSet::Set(Flag& flag, absl::string_view value, absl::string_view source) {
  auto bad = [&](absl::string_view expected) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s --%s: expected %s, got \"%s\"", source, flag.name, expected, value));
  };
  switch (flag.type) {
    case Type::kString:
      *static_cast<std::string*>(flag.target) = std::string(value);
      return absl::OkStatus();
    case Type::kInt:
      if (!absl::SimpleAtoi(value, static_cast<int*>(flag.target))) return bad("an integer");
      return absl::OkStatus();
    case Type::kInt64:
      if (!absl::SimpleAtoi(value, static_cast<int64_t*>(flag.target))) return bad("an integer");
      return absl::OkStatus();
    case Type::kDouble:
      if (!absl::SimpleAtod(value, static_cast<double*>(flag.target))) return bad("a number");
      return absl::OkStatus();
    case Type::kBool:
      if (!absl::SimpleAtob(value, static_cast<bool*>(flag.target))) return bad("true or false");
      return absl::OkStatus();
    case Type::kDuration:
      if (!absl::ParseDuration(value, static_cast<absl::Duration*>(flag.target))) {
        return bad("a duration such as 30s or 5m");
      }
      return absl::OkStatus();
  }
  return absl::InternalError("unknown flag type");
}

absl::Status FlagSet::Parse(int argc, const char* const* argv,
                            std::vector<std::string>* positional) {
  return Parse(argc, argv, positional, [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

absl::Status FlagSet::Parse(int argc, const char* const* argv, std::vector<std::string>* positional,
                            const EnvLookup& env) {
  for (Flag& flag : flags_) {
    std::optional<std::string> value = env(EnvName(flag.name));
    if (value.has_value()) {
      absl::Status status = Set(flag, *value, EnvName(flag.name));
      if (!status.ok()) return status;
    }
  }
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (flags_done || arg.size() < 2 || arg.substr(0, 1) != "-") {
      if (positional == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
      }
      positional->emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    arg.remove_prefix(arg.substr(0, 2) == "--" ? 2 : 1);
    if (arg == "help" || arg == "h") {
      help_requested_ = true;
      continue;
    }
    absl::string_view name = arg;
    std::optional<absl::string_view> value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    std::string normalized(name);
    for (char& c : normalized) c = c == '-' ? '_' : c;
    Flag* flag = Find(normalized);
    if (flag == nullptr && !value.has_value() && normalized.rfind("no", 0) == 0) {
      Flag* negated = Find(normalized.substr(2));
      if (negated != nullptr && negated->type == Type::kBool) {
        *static_cast<bool*>(negated->target) = false;
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!value.has_value()) {
      if (flag->type == Type::kBool) {
        *static_cast<bool*>(flag->target) = true;
        continue;
      }
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    }
    absl::Status status = Set(*flag, *value, "flag");
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("Usage: ", program_, " [flags]\n", description_, "\n\nFlags:\n");
  for (const Flag& flag : flags_) {
    absl::StrAppendFormat(&out, "  --%s (env %s, default \"%s\")\n      %s\n", flag.name,
                          EnvName(flag.name), flag.default_text, flag.help);
  }
  return out;
}

}  // namespace flywheel
