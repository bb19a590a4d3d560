#include "serve/request.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <regex>

#include "core/decode/runner.h"
#include "core/vocab/prompt.h"

namespace atspeed::serve {
namespace {

using nlohmann::json;

ParseResult fail(std::string message) {
  ParseResult r;
  r.status = 400;
  r.error = std::move(message);
  return r;
}

const char* type_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a non-integer number";
    default: return "a number";
  }
}

// An integer field in [lo, hi]; "" when fine, else the problem. Floats (even 10.0) and booleans are
// rejected: a client sending them has a bug worth hearing about.
std::string read_int(const json& v, const std::string& name, int64_t lo, int64_t hi, int64_t& out) {
  if (!v.is_number_integer()) return fmt::format("{} must be an integer, got {}", name, type_of(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return fmt::format("{} = {} is out of range [{}, {}]", name, v.dump(), lo, hi);
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) return fmt::format("{} = {} is out of range [{}, {}]", name, x, lo, hi);
  out = x;
  return "";
}

// The message for a number nlohmann cannot represent: "<field>: the number <text> is out of range"
// when the field can be found in the body, else the library's message.
std::string number_error(const std::string& body, const std::string& what) {
  const std::regex token(R"(parsing '([^']*)')");
  std::smatch m;
  if (std::regex_search(what, m, token)) {
    const std::string number = m[1].str();
    const std::regex field("\"([A-Za-z_]{1,32})\"\\s*:\\s*" + std::regex_replace(number, std::regex(R"([.+\-])"), R"(\$&)"));
    std::smatch f;
    if (std::regex_search(body, f, field)) {
      return fmt::format("{} = {} is out of range (not a representable number)", f[1].str(), number.substr(0, 32));
    }
    return fmt::format("the number {} is out of range", number.substr(0, 32));
  }
  return std::string("malformed JSON: ") + what;
}

}  // namespace

ParseResult parse_recommend_request(const std::string& body, const ItemCatalog& catalog, const RequestLimits& limits,
                                    uint64_t next_seed) {
  json j;
  // nlohmann reports syntax errors only by exception; translate it here, at the library boundary,
  // into a 400 that gives the position (core does the same for its JSON readers).
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    return fail(fmt::format("malformed JSON at byte {}: {}", e.byte, e.what()));
  } catch (const json::exception& e) {
    // A number beyond double's range ({"k": 1e999}) is valid JSON syntax that nlohmann refuses with
    // out_of_range: name the field it was given for.
    return fail(number_error(body, e.what()));
  }
  if (!j.is_object()) return fail(fmt::format("the body must be a JSON object, got {}", type_of(j)));
  for (const auto& [key, value] : j.items()) {
    if (key != "history" && key != "history_codes" && key != "k" && key != "mode" && key != "draft_width" &&
        key != "seed") {
      return fail(fmt::format("unknown field '{}' (known: history, history_codes, k, mode, draft_width, seed)", key));
    }
  }

  DecodeJob job;
  // mode
  Mode mode = limits.default_mode;
  if (j.contains("mode")) {
    const json& m = j["mode"];
    if (!m.is_string()) return fail(fmt::format("mode must be a string, got {}", type_of(m)));
    const auto s = m.get<std::string>();
    const auto parsed = Mode::from_name(s);
    if (!parsed) return fail(fmt::format("mode '{}' is not one of target, strict, relaxed, auto", s.substr(0, 64)));
    mode = *parsed;
  }
  if (mode.is_speculative() && !limits.has_draft) {
    return fail(fmt::format("mode '{}' needs a draft model; this server has none (use mode 'target' or 'auto')", mode.name()));
  }
  // k
  int64_t k = limits.default_k;
  if (j.contains("k")) {
    if (auto e = read_int(j["k"], "k", 1, limits.max_k, k); !e.empty()) return fail(e);
  }
  // auto: the plan's choice for k (target, or strict with its N and gamma).
  job.requested_mode = mode;
  decode::PlanChoice choice;
  if (mode.is_auto()) {
    if (limits.plan == nullptr) {
      return fail("mode 'auto' needs a server started with serve.default_mode=auto (it plans at startup)");
    }
    choice = limits.plan->choose(k);
    mode = choice.mode;
  }
  // draft_width (speculative modes; ignored for target)
  int64_t draft_width = 0, gamma = 0;
  if (job.requested_mode.is_auto() && j.contains("draft_width")) {
    return fail("draft_width cannot be given with mode 'auto' (the plan chooses it)");
  }
  if (job.requested_mode.is_auto()) {
    draft_width = mode.is_strict() ? decode::effective_draft_width(choice.draft_width, k) : 0;
    gamma = mode.is_strict() ? choice.gamma : 0;
  } else if (mode != Mode::Target) {
    draft_width = decode::effective_draft_width(limits.default_draft_width, k);  // as decode.draft_width
    if (j.contains("draft_width")) {
      if (auto e = read_int(j["draft_width"], "draft_width", 1, limits.max_draft_width, draft_width); !e.empty()) {
        return fail(e);
      }
      if (k > draft_width) return fail(fmt::format("k = {} is above draft_width = {} (need k <= draft_width)", k, draft_width));
    }
  } else if (j.contains("draft_width")) {
    int64_t ignored = 0;
    if (auto e = read_int(j["draft_width"], "draft_width", 1, limits.max_draft_width, ignored); !e.empty()) return fail(e);
  }
  // seed (relaxed; accepted and ignored by the deterministic modes)
  ParseResult ok;
  job.seed = next_seed;
  if (j.contains("seed")) {
    int64_t seed = 0;
    if (auto e = read_int(j["seed"], "seed", 0, std::numeric_limits<int64_t>::max(), seed); !e.empty()) return fail(e);
    job.seed = static_cast<uint64_t>(seed);
    ok.seed_given = true;
  }

  // history: item ids (1-based) or code tuples, chronological.
  const bool has_items = j.contains("history"), has_codes = j.contains("history_codes");
  if (has_items && has_codes) return fail("give either history or history_codes, not both");
  if (!has_items && !has_codes) return fail("missing history (1-based item ids) or history_codes (code tuples)");
  const char* field = has_items ? "history" : "history_codes";
  const json& h = j[field];
  if (!h.is_array()) return fail(fmt::format("{} must be an array, got {}", field, type_of(h)));
  if (h.empty()) return fail(fmt::format("{} is empty: at least one item is needed", field));
  if (static_cast<int64_t>(h.size()) > limits.max_history) {
    return fail(fmt::format("{} has {} items, more than serve.max_history = {}", field, h.size(), limits.max_history));
  }
  std::vector<int64_t> items;
  items.reserve(h.size());
  const int levels = catalog.levels();
  for (size_t i = 0; i < h.size(); ++i) {
    const std::string name = fmt::format("{}[{}]", field, i);
    if (has_items) {
      int64_t id = 0;
      if (!h[i].is_number_integer()) return fail(fmt::format("{} must be an integer item id, got {}", name, type_of(h[i])));
      if (auto e = read_int(h[i], name, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), id);
          !e.empty()) {
        return fail(e);
      }
      if (id < 1 || id > catalog.num_items()) {
        return fail(fmt::format("{} = {}: unknown item id (ids are 1-based, 1..{})", name, id, catalog.num_items()));
      }
      items.push_back(id - 1);
    } else {
      const json& t = h[i];
      if (!t.is_array() || static_cast<int>(t.size()) != levels) {
        return fail(fmt::format("{} must be an array of {} codes, got {}", name, levels,
                                t.is_array() ? fmt::format("{} entries", t.size()) : std::string(type_of(t))));
      }
      std::vector<int32_t> codes(static_cast<size_t>(levels));
      for (int l = 0; l < levels; ++l) {
        int64_t c = 0;
        if (auto e = read_int(t[static_cast<size_t>(l)], fmt::format("{}[{}]", name, l), 0,
                              catalog.vocab().codebook_size() - 1, c);
            !e.empty()) {
          return fail(e);
        }
        codes[static_cast<size_t>(l)] = static_cast<int32_t>(c);
      }
      const int64_t tuple = catalog.find_tuple(codes);
      if (tuple < 0) return fail(fmt::format("{} = [{}]: no item has these codes", name, fmt::join(codes, ", ")));
      // The prompt depends only on the codes, so any item of the tuple stands for it.
      items.push_back(catalog.tuple_items(tuple).front());
    }
  }
  // The model was trained on the last history_len items (SPEC §1.5): cut as the data pipeline does.
  const size_t keep = std::min(items.size(), static_cast<size_t>(limits.history_len));
  const std::span<const int64_t> kept(items.data() + (items.size() - keep), keep);
  if (!limits.prompt.is_text())
    job.prompt.reserve(static_cast<size_t>(limits.prompt.prompt_token_count(levels, static_cast<int64_t>(keep))));
  append_prompt_tokens(catalog, kept, limits.prompt, job.prompt);
  job.history_used = static_cast<int64_t>(keep);
  job.key = BatchKey{mode, k, draft_width, gamma};
  if (mode != Mode::Relaxed) job.seed = 0;  // deterministic modes: the seed plays no part (and must not split batches)
  ok.job = std::move(job);
  return ok;
}

std::string render_recommend_response(const DecodeJob& job, const DecodeResult& result, const ItemCatalog& catalog,
                                      double latency_ms, double queue_ms, int64_t batch_size) {
  json items = json::array();
  const Vocabulary& vocab = catalog.vocab();
  int64_t rank = 0;
  for (const auto& t : result.tuples) {
    json ids = json::array();
    for (int64_t item : catalog.items_for_tokens(t.tokens)) ids.push_back(item + 1);  // 1-based in the API
    json codes = json::array();
    for (int64_t token : t.tokens) codes.push_back(vocab.code_of(token));
    items.push_back({{"rank", ++rank}, {"item_ids", ids}, {"codes", codes}, {"score", t.score}});
  }
  int64_t accepted = 0;
  for (int64_t m : result.stats.accepted_levels) accepted += m;
  json stats = {{"mode", job.requested_mode.name()},
                {"k", job.key.k},
                {"rounds", result.stats.rounds},
                {"accepted_levels", accepted},
                {"accepted_levels_per_round", result.stats.accepted_levels},
                {"target_forwards", result.stats.target_forwards},
                {"draft_forwards", result.stats.draft_forwards},
                {"latency_ms", latency_ms},
                {"queue_ms", queue_ms},
                {"decode_ms", result.stats.decode_ms},
                {"batch_size", batch_size},
                {"history_used", job.history_used}};
  if (job.requested_mode.is_auto()) stats["auto_choice"] = job.key.mode.name();
  if (job.key.mode != Mode::Target) stats["draft_width"] = job.key.draft_width;
  if (job.key.gamma > 0) stats["gamma"] = job.key.gamma;
  if (job.key.mode == Mode::Relaxed) stats["seed"] = job.seed;
  return json{{"items", items}, {"stats", stats}}.dump();
}

std::string error_body(const std::string& message) {
  // dump() with the replace handler: a message quoting client bytes must still be valid JSON.
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace atspeed::serve
