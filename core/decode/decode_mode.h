// The one decoding-mode type (TensorRT-LLM's SpeculativeDecodingMode style), parsed once at the
// config or API boundary and passed typed everywhere after:
//   target   the target's constrained beam search (the baseline; exact)
//   strict   speculative beam search with AtSpeed-S verification (exact: the target's own top-K)
//   relaxed  speculative beam search with AtSpeed-R verification (sampling; faster, not exact)
//   auto     per K, the faster of the exact methods (target, or strict with a planned N and gamma),
//            chosen by the planner (core/decode/planner.h) from a measured cost model
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace atspeed::decode {

class DecodeMode {
 public:
  enum Value : uint8_t { Target, Strict, Relaxed, Auto };
  constexpr DecodeMode(Value v = Target) : value_(v) {}  // NOLINT: implicit on purpose
  constexpr Value value() const { return value_; }
  constexpr bool is_target() const { return value_ == Target; }
  constexpr bool is_strict() const { return value_ == Strict; }
  constexpr bool is_relaxed() const { return value_ == Relaxed; }
  constexpr bool is_auto() const { return value_ == Auto; }
  // Strict or relaxed: runs the draft.
  constexpr bool is_speculative() const { return value_ == Strict || value_ == Relaxed; }
  // Needs a draft model (strict, relaxed, and auto, which may choose strict).
  constexpr bool needs_draft() const { return value_ != Target; }
  constexpr bool operator==(const DecodeMode&) const = default;
  const char* name() const;

  // "target", "strict", "relaxed" or "auto"; nullopt otherwise (the HTTP API answers 400).
  static std::optional<DecodeMode> from_name(const std::string& text);
  // The same; Error(Config) naming `field` and the accepted names otherwise.
  static DecodeMode parse(const std::string& text, const std::string& field);

 private:
  Value value_;
};

}  // namespace atspeed::decode
