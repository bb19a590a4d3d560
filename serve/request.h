// The JSON API of POST /v1/recommend: parsing and validating a request body into a decode job, and
// rendering the answer. Nothing here throws on client input: every problem comes back as an
// HTTP status and a message that names the field, so bad requests never reach the decoder.
//
// Item ids in the API are 1-based, as in the dataset's sequential_*.txt files (the catalogue is
// 0-based inside atspeed: API id = catalogue id + 1). Codes are the semantic-ID codes per level,
// 0-based as in the LC-Rec index ("<a_12>" is code 12 at level 0).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/decode/decode_mode.h"
#include "core/decode/planner.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/prompt.h"

namespace atspeed::serve {

// The decode mode (core/decode/decode_mode.h); auto is resolved by the server's plan before a job is
// batched, so a BatchKey holds target, strict or relaxed.
using Mode = decode::DecodeMode;

// Requests with equal keys can share one decode batch (one search object, one set of options).
struct BatchKey {
  Mode mode = Mode::Target;
  int64_t k = 10;
  int64_t draft_width = 0;  // 0 for Mode::Target
  int64_t gamma = 0;        // speculative: drafted levels per round; 0 = the server's decode.gamma
  bool operator==(const BatchKey&) const = default;
};

// A validated request, ready for the decoder.
struct DecodeJob {
  BatchKey key;                  // what runs: target, strict or relaxed
  Mode requested_mode = Mode::Target;  // what the client asked for (auto: key holds the plan's choice)
  std::vector<int64_t> prompt;  // token ids (SPEC §1.6)
  uint64_t seed = 0;            // relaxed only
  int64_t history_used = 0;     // items in the prompt after the cut to the history length
};

// The limits and defaults a request is checked against (from ServeConfig and the data config).
struct RequestLimits {
  int64_t max_history = 200;
  int history_len = 20;         // the model's prompt keeps the last history_len items
  PromptLayout prompt;          // the model's prompt layout (data.prompt_format, data.sep_token)
  int64_t max_k = 100;
  int64_t max_draft_width = 256;
  int64_t default_k = 10;
  Mode default_mode = Mode::Strict;
  int64_t default_draft_width = 40;  // decode.draft_width
  bool has_draft = true;
  // Mode auto: the plan made at startup (serve.default_mode=auto); null: auto requests get 400.
  std::shared_ptr<const decode::Plan> plan;
};

struct ParseResult {
  std::optional<DecodeJob> job;  // set when valid
  int status = 200;              // 400 when invalid
  std::string error;             // names the problem
  bool seed_given = false;
};

// Parses and validates a body. `next_seed` supplies the seed of a relaxed request without one (the
// seed used is returned in the response, so the answer can be reproduced).
ParseResult parse_recommend_request(const std::string& body, const ItemCatalog& catalog, const RequestLimits& limits,
                                    uint64_t next_seed);

// One recommended code tuple of a decode.
struct RankedTuple {
  std::vector<int64_t> tokens;  // code token ids, one per level
  float score = 0;
};

// What the decoder reports per request.
struct DecodeStats {
  int64_t rounds = 0;
  std::vector<int64_t> accepted_levels;  // per round (speculative modes)
  int64_t target_forwards = 0;
  int64_t draft_forwards = 0;
  double decode_ms = 0;                  // wall time of the batch's decode
};

struct DecodeResult {
  std::vector<RankedTuple> tuples;  // best first
  DecodeStats stats;
};

// The response body: items (rank, 1-based item ids of the tuple, codes, score) and stats.
std::string render_recommend_response(const DecodeJob& job, const DecodeResult& result, const ItemCatalog& catalog,
                                      double latency_ms, double queue_ms, int64_t batch_size);

// {"error": message}
std::string error_body(const std::string& message);

}  // namespace atspeed::serve
