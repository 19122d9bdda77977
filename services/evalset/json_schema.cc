#include "services/evalset/json_schema.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/text/text.h"
#include "re2/re2.h"
#include "services/evalset/json.h"

namespace flywheel::evalset {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

const std::set<std::string>& KnownKeywords() {
  static const auto* keywords = new std::set<std::string>{"type",
                                                          "enum",
                                                          "const",
                                                          "properties",
                                                          "required",
                                                          "additionalProperties",
                                                          "items",
                                                          "minItems",
                                                          "maxItems",
                                                          "minLength",
                                                          "maxLength",
                                                          "pattern",
                                                          "minimum",
                                                          "maximum",
                                                          "exclusiveMinimum",
                                                          "exclusiveMaximum",
                                                          "allOf",
                                                          "anyOf",
                                                          "oneOf",
                                                          "not",
                                                          "title",
                                                          "description"};
  return *keywords;
}

const std::set<std::string>& KnownTypes() {
  static const auto* types = new std::set<std::string>{"object",  "array",   "string", "number",
                                                       "integer", "boolean", "null"};
  return *types;
}

std::string EscapePointerToken(const std::string& token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

bool IsNonNegativeInteger(const Value& v) {
  return v.kind_case() == Value::kNumberValue && v.number_value() >= 0 &&
         v.number_value() == std::floor(v.number_value()) && v.number_value() < 1e15;
}

absl::Status Bad(const std::string& field, const std::string& path, const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", problem, path.empty() ? "" : absl::StrCat(" (at ", path, ")")));
}

absl::Status CheckSchemaValue(const std::string& field, const std::string& path, const Value& v,
                              int depth);

absl::Status CheckSchemaObject(const std::string& field, const std::string& path,
                               const Struct& schema, int depth) {
  if (depth > 32) return Bad(field, path, "schema nested too deeply");
  for (const auto& [key, value] : schema.fields()) {
    const std::string here = absl::StrCat(path, "/", EscapePointerToken(key));
    if (!KnownKeywords().count(key)) return Bad(field, "", "unsupported keyword " + key);
    if (key == "type") {
      auto check_type = [&](const Value& t) -> absl::Status {
        if (t.kind_case() != Value::kStringValue || !KnownTypes().count(t.string_value())) {
          return Bad(field, here, "type must name a JSON type");
        }
        return absl::OkStatus();
      };
      if (value.kind_case() == Value::kListValue) {
        if (value.list_value().values_size() == 0) return Bad(field, here, "type list is empty");
        for (const Value& t : value.list_value().values()) {
          if (auto s = check_type(t); !s.ok()) return s;
        }
      } else if (auto s = check_type(value); !s.ok()) {
        return s;
      }
    } else if (key == "enum") {
      if (value.kind_case() != Value::kListValue) return Bad(field, here, "enum must be an array");
    } else if (key == "properties") {
      if (value.kind_case() != Value::kStructValue) {
        return Bad(field, here, "properties must be an object");
      }
      for (const auto& [name, sub] : value.struct_value().fields()) {
        if (auto s = CheckSchemaValue(field, absl::StrCat(here, "/", EscapePointerToken(name)), sub,
                                      depth + 1);
            !s.ok()) {
          return s;
        }
      }
    } else if (key == "required") {
      if (value.kind_case() != Value::kListValue) {
        return Bad(field, here, "required must be an array of strings");
      }
      for (const Value& name : value.list_value().values()) {
        if (name.kind_case() != Value::kStringValue) {
          return Bad(field, here, "required must be an array of strings");
        }
      }
    } else if (key == "additionalProperties" || key == "items" || key == "not") {
      if (auto s = CheckSchemaValue(field, here, value, depth + 1); !s.ok()) return s;
    } else if (key == "minItems" || key == "maxItems" || key == "minLength" || key == "maxLength") {
      if (!IsNonNegativeInteger(value)) {
        return Bad(field, here, key + " must be a non-negative integer");
      }
    } else if (key == "pattern") {
      if (value.kind_case() != Value::kStringValue)
        return Bad(field, here, "pattern: not a string");
      RE2 re(value.string_value(), RE2::Quiet);
      if (!re.ok()) return Bad(field, here, "pattern does not compile: " + re.error());
    } else if (key == "minimum" || key == "maximum" || key == "exclusiveMinimum" ||
               key == "exclusiveMaximum") {
      if (value.kind_case() != Value::kNumberValue) return Bad(field, here, key + ": not a number");
    } else if (key == "allOf" || key == "anyOf" || key == "oneOf") {
      if (value.kind_case() != Value::kListValue || value.list_value().values_size() == 0) {
        return Bad(field, here, key + " must be a non-empty array of schemas");
      }
      for (int i = 0; i < value.list_value().values_size(); ++i) {
        if (auto s = CheckSchemaValue(field, absl::StrCat(here, "/", i),
                                      value.list_value().values(i), depth + 1);
            !s.ok()) {
          return s;
        }
      }
    } else if (key == "title" || key == "description") {
      if (value.kind_case() != Value::kStringValue) return Bad(field, here, key + ": not a string");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSchemaValue(const std::string& field, const std::string& path, const Value& v,
                              int depth) {
  if (v.kind_case() == Value::kBoolValue) return absl::OkStatus();
  if (v.kind_case() != Value::kStructValue) {
    return Bad(field, path, "a schema must be an object or a boolean");
  }
  return CheckSchemaObject(field, path, v.struct_value(), depth);
}

bool JsonEquals(const Value& a, const Value& b) {
  if (a.kind_case() != b.kind_case()) {
    // null may be unset or explicit.
    const bool a_null = a.kind_case() == Value::kNullValue || a.kind_case() == Value::KIND_NOT_SET;
    const bool b_null = b.kind_case() == Value::kNullValue || b.kind_case() == Value::KIND_NOT_SET;
    return a_null && b_null;
  }
  switch (a.kind_case()) {
    case Value::kNumberValue:
      return a.number_value() == b.number_value();
    case Value::kStringValue:
      return a.string_value() == b.string_value();
    case Value::kBoolValue:
      return a.bool_value() == b.bool_value();
    case Value::kListValue: {
      const ListValue& x = a.list_value();
      const ListValue& y = b.list_value();
      if (x.values_size() != y.values_size()) return false;
      for (int i = 0; i < x.values_size(); ++i) {
        if (!JsonEquals(x.values(i), y.values(i))) return false;
      }
      return true;
    }
    case Value::kStructValue: {
      const auto& x = a.struct_value().fields();
      const auto& y = b.struct_value().fields();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x) {
        auto it = y.find(key);
        if (it == y.end() || !JsonEquals(value, it->second)) return false;
      }
      return true;
    }
    default:
      return true;
  }
}

bool HasType(const Value& instance, const std::string& type) {
  switch (instance.kind_case()) {
    case Value::kStructValue:
      return type == "object";
    case Value::kListValue:
      return type == "array";
    case Value::kStringValue:
      return type == "string";
    case Value::kBoolValue:
      return type == "boolean";
    case Value::kNumberValue:
      return type == "number" ||
             (type == "integer" && instance.number_value() == std::floor(instance.number_value()));
    default:
      return type == "null";
  }
}

std::optional<SchemaViolation> Validate(const Value& schema, const Value& instance,
                                        const std::string& pointer);

std::optional<SchemaViolation> Fail(const std::string& pointer, std::string message) {
  return SchemaViolation{pointer.empty() ? "/" : pointer, std::move(message)};
}

std::optional<SchemaViolation> ValidateObject(const Struct& schema, const Value& instance,
                                              const std::string& pointer) {
  const auto& kw = schema.fields();
  auto get = [&](const char* name) -> const Value* {
    auto it = kw.find(name);
    return it == kw.end() ? nullptr : &it->second;
  };
  if (const Value* type = get("type")) {
    bool ok = false;
    if (type->kind_case() == Value::kListValue) {
      for (const Value& t : type->list_value().values())
        ok = ok || HasType(instance, t.string_value());
    } else {
      ok = HasType(instance, type->string_value());
    }
    if (!ok) return Fail(pointer, "type: value is not of type " + json::ValueToJson(*type));
  }
  if (const Value* e = get("enum")) {
    bool found = false;
    for (const Value& option : e->list_value().values())
      found = found || JsonEquals(option, instance);
    if (!found) return Fail(pointer, "enum: value is not one of the allowed values");
  }
  if (const Value* c = get("const")) {
    if (!JsonEquals(*c, instance)) return Fail(pointer, "const: value differs");
  }
  if (instance.kind_case() == Value::kStructValue) {
    const auto& fields = instance.struct_value().fields();
    if (const Value* required = get("required")) {
      for (const Value& name : required->list_value().values()) {
        if (!fields.count(name.string_value())) {
          return Fail(pointer, "required: missing property " + name.string_value());
        }
      }
    }
    const Value* properties = get("properties");
    const Value* additional = get("additionalProperties");
    // Sorted iteration so the reported violation is deterministic.
    std::set<std::string> names;
    for (const auto& [name, unused] : fields) names.insert(name);
    for (const std::string& name : names) {
      const std::string child = absl::StrCat(pointer, "/", EscapePointerToken(name));
      const Value* sub = nullptr;
      if (properties != nullptr) {
        auto it = properties->struct_value().fields().find(name);
        if (it != properties->struct_value().fields().end()) sub = &it->second;
      }
      if (sub == nullptr) sub = additional;
      if (sub == nullptr) continue;
      if (sub == additional && sub->kind_case() == Value::kBoolValue && !sub->bool_value()) {
        return Fail(child, "additionalProperties: property not allowed");
      }
      if (auto v = Validate(*sub, fields.at(name), child)) return v;
    }
  }
  if (instance.kind_case() == Value::kListValue) {
    const int n = instance.list_value().values_size();
    if (const Value* m = get("minItems"); m && n < m->number_value()) {
      return Fail(pointer, "minItems: too few items");
    }
    if (const Value* m = get("maxItems"); m && n > m->number_value()) {
      return Fail(pointer, "maxItems: too many items");
    }
    if (const Value* items = get("items")) {
      for (int i = 0; i < n; ++i) {
        if (auto v =
                Validate(*items, instance.list_value().values(i), absl::StrCat(pointer, "/", i))) {
          return v;
        }
      }
    }
  }
  if (instance.kind_case() == Value::kStringValue) {
    const double length = static_cast<double>(text::CodePointCount(instance.string_value()));
    if (const Value* m = get("minLength"); m && length < m->number_value()) {
      return Fail(pointer, "minLength: string too short");
    }
    if (const Value* m = get("maxLength"); m && length > m->number_value()) {
      return Fail(pointer, "maxLength: string too long");
    }
    if (const Value* p = get("pattern")) {
      RE2 re(p->string_value(), RE2::Quiet);
      if (!RE2::PartialMatch(instance.string_value(), re)) {
        return Fail(pointer, "pattern: string does not match " + p->string_value());
      }
    }
  }
  if (instance.kind_case() == Value::kNumberValue) {
    const double x = instance.number_value();
    if (const Value* m = get("minimum"); m && x < m->number_value()) {
      return Fail(pointer, "minimum: number too small");
    }
    if (const Value* m = get("maximum"); m && x > m->number_value()) {
      return Fail(pointer, "maximum: number too large");
    }
    if (const Value* m = get("exclusiveMinimum"); m && x <= m->number_value()) {
      return Fail(pointer, "exclusiveMinimum: number too small");
    }
    if (const Value* m = get("exclusiveMaximum"); m && x >= m->number_value()) {
      return Fail(pointer, "exclusiveMaximum: number too large");
    }
  }
  if (const Value* all = get("allOf")) {
    for (const Value& sub : all->list_value().values()) {
      if (auto v = Validate(sub, instance, pointer)) return v;
    }
  }
  if (const Value* any = get("anyOf")) {
    bool ok = false;
    for (const Value& sub : any->list_value().values())
      ok = ok || !Validate(sub, instance, pointer);
    if (!ok) return Fail(pointer, "anyOf: value matches none of the schemas");
  }
  if (const Value* one = get("oneOf")) {
    int matches = 0;
    for (const Value& sub : one->list_value().values())
      matches += !Validate(sub, instance, pointer);
    if (matches != 1) return Fail(pointer, "oneOf: value must match exactly one schema");
  }
  if (const Value* n = get("not")) {
    if (!Validate(*n, instance, pointer)) return Fail(pointer, "not: value matches the schema");
  }
  return std::nullopt;
}

std::optional<SchemaViolation> Validate(const Value& schema, const Value& instance,
                                        const std::string& pointer) {
  if (schema.kind_case() == Value::kBoolValue) {
    if (schema.bool_value()) return std::nullopt;
    return Fail(pointer, "schema false allows no value");
  }
  return ValidateObject(schema.struct_value(), instance, pointer);
}

}  // namespace

absl::Status CheckJsonSchema(const std::string& field, const Struct& schema) {
  return CheckSchemaObject(field, "", schema, 0);
}

std::optional<SchemaViolation> ValidateJsonSchema(const Struct& schema, const Value& instance) {
  return ValidateObject(schema, instance, "");
}

}  // namespace flywheel::evalset
