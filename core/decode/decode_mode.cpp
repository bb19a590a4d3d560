#include "core/decode/decode_mode.h"

#include "core/config.h"

namespace atspeed::decode {

const char* DecodeMode::name() const {
  switch (value_) {
    case Target: return "target";
    case Strict: return "strict";
    case Relaxed: return "relaxed";
    case Auto: return "auto";
  }
  return "?";
}

std::optional<DecodeMode> DecodeMode::from_name(const std::string& text) {
  for (Value v : {Target, Strict, Relaxed, Auto}) {
    if (text == DecodeMode(v).name()) return DecodeMode(v);
  }
  return std::nullopt;
}

DecodeMode DecodeMode::parse(const std::string& text, const std::string& field) {
  const auto m = from_name(text);
  config_ensure(m.has_value(), field, "must be target, strict, relaxed or auto (got '" + text + "')");
  return *m;
}

}  // namespace atspeed::decode
