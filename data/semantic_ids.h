// Semantic IDs for new datasets (the shipped data uses LC-Rec's RQ-VAE index instead).
//
// Item vectors come from an HDF5 embedding matrix, or, when there is none, from the training
// interactions: a truncated SVD of the item x user matrix A (so of the item co-occurrence A A^T)
// by seeded subspace iteration. Codes are residual k-means: level l clusters the residuals left by
// levels < l into codebook_size centroids (k-means++ init, seeded).
//
// Disambiguation (our choice, documented): after quantisation, items that share a full code tuple
// keep the first (lowest id) item's tuple; each other item takes the free last-level code (not yet
// used under the same first L-1 codes) whose centroid is nearest to its last-level residual. Only
// when all codebook_size last-level codes under a prefix are taken does a collision remain; it is
// reported. (LC-Rec re-quantises the last level with Sinkhorn instead; the effect is the same:
// unique tuples where the codebook allows.)
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/vocab/item_catalog.h"
#include "data/preprocess.h"

namespace atspeed {

struct SemanticIdOptions {
  int64_t svd_dim = 32;     // item vector size when derived from interactions
  int kmeans_iters = 20;    // Lloyd iterations per level
  int svd_iters = 8;        // subspace iterations
  uint64_t seed = 2023;
};

struct SemanticIdReport {
  std::string source;             // "embeddings <file>" or "interactions (svd)"
  int64_t collisions_before = 0;  // surplus items before disambiguation
  int64_t collisions_after = 0;
};

// Residual k-means codes of the rows of `vectors` (float [n, d]) plus the disambiguation step.
// Returns row-major [n, levels] codes.
std::vector<int32_t> residual_kmeans_codes(const at::Tensor& vectors, const Vocabulary& vocab,
                                           const SemanticIdOptions& options, SemanticIdReport* report = nullptr);

// Item vectors [num_items, dim] from per-user training sequences (truncated SVD of item x user).
at::Tensor interaction_item_vectors(const UserSequences& train, int64_t num_items, const SemanticIdOptions& options);

// Reads a 2-D numeric dataset from an HDF5 file as float [rows, cols].
at::Tensor read_hdf5_matrix(const std::string& path, const std::string& dataset);

// Codes for a preprocessed split: from embeddings (rows named by the lines of ids_path, raw item
// ids) when `embeddings` is non-empty, else from the training interactions.
ItemCatalog make_semantic_ids(const SplitResult& split, const std::string& embeddings, const std::string& dataset,
                              const std::string& ids_path, const SemanticIdOptions& options, const Vocabulary& vocab,
                              SemanticIdReport* report = nullptr);

// An existing index keyed by raw item id: JSON {"<raw id>": ["<a_1>", ...]} holding every item of
// `raw_items`; the result is in the order of raw_items (the new ids).
ItemCatalog read_codes_by_raw_id(const std::string& path, const std::vector<std::string>& raw_items,
                                 const Vocabulary& vocab);

}  // namespace atspeed
