// HDF5 checkpoints: one file, one dataset per tensor named by its module path
// ("model.layers.3.self_attn.q_proj.weight" at the root; "optimizer/exp_avg.model.norm.weight" in a
// group), plus root attributes that say what the file is (format_version, kind, config_yaml,
// fingerprint) and free-form string/int64/float64 attributes on the root or any group.
//
// Layout details a foreign reader (h5py) needs:
//   - every dataset has a string attribute "dtype" (float32, float64, bfloat16, float16, int64,
//     int32, int16, int8, uint8, bool); 16-bit floats are stored as uint16 bit patterns, bool as
//     uint8, so reading restores the exact torch dtype bit for bit;
//   - non-trivial datasets are chunked along their leading dimensions with a Fletcher-32 checksum,
//     and the file uses the 1.8+ format whose metadata is checksummed too, so a flipped byte
//     anywhere is an error instead of silently wrong weights;
//   - links are indexed by creation order, so list() returns tensors in the order they were written
//     (model order), not alphabetical order ("layers.10" before "layers.2").
//
// Writes are atomic: CheckpointWriter writes "<path>.tmp.<pid>" and commit() fsyncs and renames it
// over <path>; a writer destroyed without commit() removes its temp file and leaves <path> as it was.
// Every failure (missing, truncated, corrupt, wrong version, wrong kind, missing tensor) is an
// atspeed::Error of kind Checkpoint that names the file and the object.
//
// Thread safety: the HDF5 build we link is thread-safe (one global lock); a CheckpointReader may be
// used from several threads at once, a CheckpointWriter from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace at {
class Tensor;
}

namespace atspeed {

inline constexpr int64_t kCheckpointFormatVersion = 1;

// The root attributes. format_version is always written as kCheckpointFormatVersion; on read it
// holds the file's value (which the reader has already checked). The extra maps hold any other
// root attributes; their keys must not collide with the four fixed names.
struct CheckpointAttributes {
  int64_t format_version = kCheckpointFormatVersion;
  std::string kind;         // "target", "draft", "teacher", ...
  std::string config_yaml;  // the resolved config
  std::string fingerprint;  // opaque item-index fingerprint
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> doubles;
};

using AttributeValue = std::variant<std::string, int64_t, double>;

struct TensorInfo {
  std::string name;            // full path, e.g. "optimizer/exp_avg.model.norm.weight"
  std::string dtype;           // "float32", "bfloat16", ...
  std::vector<int64_t> shape;  // empty for a 0-d tensor
  int64_t numel() const;
};

// Dtype names as stored in the "dtype" attribute.
std::vector<std::string> checkpoint_dtypes();

class CheckpointWriter {
 public:
  // Creates "<path>.tmp.<pid>" (truncating a stale one) and writes the root attributes.
  CheckpointWriter(std::string path, const CheckpointAttributes& attributes);
  // Without commit(): closes and removes the temp file; <path> is untouched. Never throws.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Writes a contiguous CPU copy of `tensor` (any device, any strides). A '/' in the name puts the
  // dataset in groups, created as needed. Writing the same name twice is an error.
  void write(const std::string& name, const at::Tensor& tensor);
  // Attributes on the root (group "") or on a group (created as needed, e.g. "trainer_state").
  // Setting an existing key replaces it.
  void set_string_attribute(const std::string& group, const std::string& key, const std::string& value);
  void set_int_attribute(const std::string& group, const std::string& key, int64_t value);
  void set_double_attribute(const std::string& group, const std::string& key, double value);
  // Deflate level (1-9; 0 = off, the default) for the chunked datasets written after this call,
  // with the byte-shuffle filter before it (fp16/fp32 logits compress far better shuffled). Small
  // (compact) datasets are never compressed. Readers need nothing: HDF5 undoes the filters.
  void set_compression(int deflate_level);
  // At most `rows` rows of dimension 0 per chunk for the datasets written after this call (0 = the
  // default of about 4 MiB chunks). Reading one row decompresses its whole chunk, so data read one
  // row at a time in random order (teacher logits) wants one row per chunk.
  void set_chunk_rows(int64_t rows);

  // Flushes, closes and fsyncs the temp file, renames it over path() and fsyncs the directory.
  // After commit() the writer accepts nothing more.
  void commit();

  const std::string& path() const;
  const std::string& temp_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CheckpointReader {
 public:
  // Opens `path` and checks format_version; with expected_kind, also that the kind matches.
  explicit CheckpointReader(std::string path, std::optional<std::string> expected_kind = std::nullopt);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::string& path() const;
  const CheckpointAttributes& attributes() const;

  // Every tensor in the file, groups included, in the order it was written.
  std::vector<TensorInfo> list() const;
  // Every group path ("optimizer", "trainer_state", ...), recursively; the root is not listed.
  std::vector<std::string> groups() const;
  bool contains(const std::string& name) const;
  TensorInfo info(const std::string& name) const;
  // The whole tensor, on the CPU, with the dtype it was written with.
  at::Tensor read(const std::string& name) const;
  // Only the slice [begin, end) along dim (0: rows, 1: columns) of a tensor with at least dim+1
  // dimensions, read through an HDF5 hyperslab: a tensor-parallel rank reads only its shard.
  // Equal to read(name).narrow(dim, begin, end - begin).
  at::Tensor read_block(const std::string& name, int dim, int64_t begin, int64_t end) const;
  // Tensor payload bytes (in the stored dtype) that read() and read_block() have returned since
  // this reader was opened: lets tests check that a shard load read only its hyperslabs.
  int64_t bytes_read() const;

  // Attributes of the root (group "") or a group; nullopt when absent. Throws when the attribute
  // exists with another type (int64 attributes are also returned by double_attribute).
  std::optional<std::string> string_attribute(const std::string& group, const std::string& key) const;
  std::optional<int64_t> int_attribute(const std::string& group, const std::string& key) const;
  std::optional<double> double_attribute(const std::string& group, const std::string& key) const;
  // Every attribute of the root or a group, by name.
  std::map<std::string, AttributeValue> group_attributes(const std::string& group) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes all tensors (in map order) with the given root attributes, atomically.
void save_checkpoint(const std::string& path, const CheckpointAttributes& attributes,
                     const std::map<std::string, at::Tensor>& tensors);
// Reads every tensor of the file (groups included, keyed by full name).
std::map<std::string, at::Tensor> load_checkpoint(const std::string& path,
                                                  const std::optional<std::string>& expected_kind = std::nullopt);

}  // namespace atspeed
