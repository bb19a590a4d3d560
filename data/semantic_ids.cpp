#include "data/semantic_ids.h"

#include <ATen/ATen.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <unordered_map>

#include "core/errors.h"
#include "data/lcrec.h"
#include "data/sampler.h"

namespace atspeed {

namespace {

// k-means++ initialisation and Lloyd iterations; returns (centroids [k, d], assignment [n]).
std::pair<at::Tensor, at::Tensor> kmeans(const at::Tensor& x, int64_t k, int iters, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  k = std::min(k, n);
  std::vector<int64_t> chosen = {static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n)))};
  at::Tensor d2 = (x - x[chosen[0]]).pow(2).sum(1);
  while (static_cast<int64_t>(chosen.size()) < k) {
    const auto w = d2.to(at::kDouble).contiguous();
    const double* p = w.data_ptr<double>();
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += p[i];
    int64_t pick = -1;
    if (total > 0) {
      double r = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
      for (int64_t i = 0; i < n && pick < 0; ++i) {
        r -= p[i];
        if (r < 0 && p[i] > 0) pick = i;
      }
    }
    if (pick < 0) {  // all remaining points coincide with centroids: take any unchosen point
      for (int64_t i = 0; i < n && pick < 0; ++i)
        if (std::find(chosen.begin(), chosen.end(), i) == chosen.end()) pick = i;
    }
    chosen.push_back(pick);
    d2 = at::minimum(d2, (x - x[pick]).pow(2).sum(1));
  }
  at::Tensor c = x.index_select(0, at::tensor(chosen, at::kLong)).clone();
  at::Tensor assign;
  for (int it = 0; it <= iters; ++it) {
    assign = at::cdist(x, c).argmin(1);
    if (it == iters) break;
    const auto sums = at::zeros_like(c).index_add_(0, assign, x);
    const auto counts = at::zeros({c.size(0)}, x.options()).index_add_(0, assign, at::ones({n}, x.options()));
    const auto nonempty = counts > 0;
    c = at::where(nonempty.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1), c);
  }
  return {c, assign};
}

}  // namespace

std::vector<int32_t> residual_kmeans_codes(const at::Tensor& vectors, const Vocabulary& vocab,
                                           const SemanticIdOptions& options, SemanticIdReport* report) {
  ATSPEED_ENSURE(Data, vectors.dim() == 2 && vectors.size(0) > 0, "semantic ids: expected a non-empty [items, dim] matrix");
  const int64_t n = vectors.size(0);
  const int levels = vocab.levels();
  const int64_t K = vocab.codebook_size();
  std::mt19937_64 rng(options.seed);
  at::Tensor residual = vectors.to(at::kFloat).contiguous().clone();
  std::vector<int32_t> codes(static_cast<size_t>(n * levels));
  at::Tensor last_centroids;
  for (int l = 0; l < levels; ++l) {
    auto [c, assign] = kmeans(residual, K, options.kmeans_iters, rng);
    const auto a = assign.contiguous();
    for (int64_t i = 0; i < n; ++i) codes[static_cast<size_t>(i * levels + l)] = static_cast<int32_t>(a.data_ptr<int64_t>()[i]);
    residual = residual - c.index_select(0, assign);
    if (l == levels - 1) last_centroids = c;
    else residual = residual.contiguous();
  }
  // Disambiguation on the last level (see the header). The last level's residual before
  // subtraction is residual + chosen centroid.
  const at::Tensor last_in = residual + last_centroids.index_select(
                                            0, at::tensor(std::vector<int64_t>(codes.begin(), codes.end()), at::kLong)
                                                   .view({n, levels})
                                                   .select(1, levels - 1));
  const at::Tensor dist = at::cdist(last_in, last_centroids).contiguous();  // [n, k']
  const int64_t kk = last_centroids.size(0);
  std::map<std::vector<int32_t>, std::vector<int64_t>> by_tuple;
  for (int64_t i = 0; i < n; ++i)
    by_tuple[std::vector<int32_t>(codes.begin() + i * levels, codes.begin() + (i + 1) * levels)].push_back(i);
  std::map<std::vector<int32_t>, std::vector<char>> used_last;  // prefix -> used last codes
  for (const auto& [t, items] : by_tuple) {
    auto& u = used_last[std::vector<int32_t>(t.begin(), t.end() - 1)];
    if (u.empty()) u.assign(static_cast<size_t>(K), 0);
    u[static_cast<size_t>(t.back())] = 1;
  }
  int64_t before = 0, after = 0;
  for (const auto& [t, items] : by_tuple) {
    before += static_cast<int64_t>(items.size()) - 1;
    auto& used = used_last[std::vector<int32_t>(t.begin(), t.end() - 1)];
    for (size_t j = 1; j < items.size(); ++j) {
      const int64_t i = items[j];
      const float* d = dist.data_ptr<float>() + i * kk;
      int64_t best = -1;
      // Prefer free codes that have a centroid, nearest first; then any free code.
      for (int64_t c = 0; c < kk; ++c)
        if (!used[static_cast<size_t>(c)] && (best < 0 || d[c] < d[best])) best = c;
      for (int64_t c = kk; c < K && best < 0; ++c)
        if (!used[static_cast<size_t>(c)]) best = c;
      if (best < 0) {
        ++after;
        continue;
      }
      used[static_cast<size_t>(best)] = 1;
      codes[static_cast<size_t>(i * levels + levels - 1)] = static_cast<int32_t>(best);
    }
  }
  if (report) {
    report->collisions_before = before;
    report->collisions_after = after;
  }
  return codes;
}

at::Tensor interaction_item_vectors(const UserSequences& train, int64_t num_items, const SemanticIdOptions& options) {
  std::vector<int64_t> rows, cols;
  for (size_t u = 0; u < train.size(); ++u)
    for (int64_t item : train[u]) {
      rows.push_back(item);
      cols.push_back(static_cast<int64_t>(u));
    }
  const auto n_users = static_cast<int64_t>(std::max<size_t>(train.size(), 1));
  const int64_t k = std::min<int64_t>(options.svd_dim, num_items);
  std::mt19937_64 rng(options.seed ^ 0x5eedULL);
  auto gaussian_like = [&](int64_t r, int64_t c) {
    std::vector<float> v(static_cast<size_t>(r * c));
    for (auto& x : v) x = static_cast<float>(static_cast<double>(rng() >> 11) * 0x1.0p-53 - 0.5);
    return at::tensor(v, at::kFloat).view({r, c});
  };
  at::Tensor q = gaussian_like(num_items, k);
  if (!rows.empty()) {
    const auto idx = at::stack({at::tensor(rows, at::kLong), at::tensor(cols, at::kLong)});
    const auto a = at::sparse_coo_tensor(idx, at::ones({static_cast<int64_t>(rows.size())}, at::kFloat),
                                         {num_items, n_users})
                       .coalesce();
    const auto at_ = a.t().coalesce();
    for (int it = 0; it < options.svd_iters; ++it) {
      const auto z = at::mm(a, at::mm(at_, q));
      q = std::get<0>(at::linalg_qr(z));
    }
    // Scale the singular directions by their singular values: rows = U S.
    const auto proj = at::mm(at_, q);  // [users, k] = V S
    const auto s = proj.norm(2, 0);
    q = q * s.unsqueeze(0);
  }
  // A small seeded jitter separates items with no training interactions (zero rows).
  return q + 1e-4 * gaussian_like(num_items, k);
}

at::Tensor read_hdf5_matrix(const std::string& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ATSPEED_ENSURE(Data, file >= 0, path, ": cannot open as HDF5");
  const hid_t ds = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  if (ds < 0) {
    H5Fclose(file);
    ATSPEED_THROW(Data, path, ": no dataset '", dataset, "'");
  }
  const hid_t space = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0};
  const int rank = H5Sget_simple_extent_ndims(space);
  at::Tensor out;
  bool ok = rank == 2;
  if (ok) {
    H5Sget_simple_extent_dims(space, dims, nullptr);
    out = at::empty({static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1])}, at::kFloat);
    ok = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr<float>()) >= 0;
  }
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(file);
  ATSPEED_ENSURE(Data, rank == 2, path, ":", dataset, ": expected a 2-D matrix, got rank ", rank);
  ATSPEED_ENSURE(Data, ok, path, ":", dataset, ": read failed (not numeric?)");
  return out;
}

ItemCatalog make_semantic_ids(const SplitResult& split, const std::string& embeddings, const std::string& dataset,
                              const std::string& ids_path, const SemanticIdOptions& options, const Vocabulary& vocab,
                              SemanticIdReport* report) {
  const auto n = static_cast<int64_t>(split.items.size());
  at::Tensor vectors;
  SemanticIdReport r;
  if (!embeddings.empty()) {
    ATSPEED_ENSURE(Data, !ids_path.empty(), "--embeddings needs --embeddings-ids (the raw item id of each row)");
    const at::Tensor m = read_hdf5_matrix(embeddings, dataset);
    std::unordered_map<std::string, int64_t> row_of;
    const std::string text = read_text_file(ids_path);
    int64_t row = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      if (end > pos) row_of.emplace(text.substr(pos, end - pos), row++);
      pos = end + 1;
    }
    ATSPEED_ENSURE(Data, row == m.size(0), ids_path, ": ", row, " ids for ", m.size(0), " embedding rows");
    std::vector<int64_t> pick;
    for (const auto& name : split.items) {
      const auto it = row_of.find(name);
      ATSPEED_ENSURE(Data, it != row_of.end(), ids_path, ": item ", name, " has no embedding");
      pick.push_back(it->second);
    }
    vectors = m.index_select(0, at::tensor(pick, at::kLong));
    r.source = "embeddings " + embeddings;
  } else {
    vectors = interaction_item_vectors(split.train, n, options);
    r.source = "interactions (svd)";
  }
  auto codes = residual_kmeans_codes(vectors, vocab, options, &r);
  if (report) *report = r;
  return ItemCatalog(vocab, std::move(codes));
}

ItemCatalog read_codes_by_raw_id(const std::string& path, const std::vector<std::string>& raw_items,
                                 const Vocabulary& vocab) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    ATSPEED_THROW(Data, path, ": not valid JSON: ", e.what());
  }
  ATSPEED_ENSURE(Data, doc.is_object(), path, ": expected a JSON object {\"<raw item id>\": [codes...]}");
  // Re-key by new ids and validate with the LC-Rec reader's rules.
  nlohmann::json keyed = nlohmann::json::object();
  for (size_t i = 0; i < raw_items.size(); ++i) {
    const auto it = doc.find(raw_items[i]);
    ATSPEED_ENSURE(Data, it != doc.end(), path, ": item ", raw_items[i], " has no codes");
    keyed[std::to_string(i)] = *it;
  }
  return parse_lcrec_index(keyed.dump(), path + " (re-keyed by new item id)", vocab);
}

}  // namespace atspeed
