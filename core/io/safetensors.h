// safetensors files (HuggingFace's weight format): an 8-byte little-endian header length N, N bytes
// of JSON ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}), then the raw little-endian tensor bytes, offsets relative to
// the end of the header.
//
// The reader checks everything before it hands out a byte, because a converted checkpoint is only
// as good as the file it came from: the header length against the file size, the JSON, every
// entry's dtype, shape and offsets (inside the data region, not overlapping another tensor, and
// exactly shape x dtype size bytes long). Every failure is an atspeed::Error of kind Checkpoint that
// names the file and, where there is one, the tensor.
//
// Supported dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL (the torch dtypes we have).
// Others (F8_*, U16, U32, U64, ...) are refused by name when the file is opened.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace atspeed {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // the file's dtype code: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // empty for a 0-d tensor
  int64_t begin = 0;           // byte range within the data region
  int64_t end = 0;
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Maps the file (read-only, private) and validates the header. Throws Error(Checkpoint).
  explicit SafetensorsReader(std::string path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&&) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept;

  const std::string& path() const;
  // The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const;
  // Every tensor, in data-offset order (the order the writer wrote them).
  const std::vector<SafetensorsEntry>& list() const;
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;
  // The tensor on the CPU with its dtype, as an owning copy (the file can be closed afterwards).
  at::Tensor read(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The safetensors dtype code of a tensor's dtype (float32 -> "F32"); Error(Checkpoint) for a dtype
// outside the supported list.
std::string safetensors_dtype_code(const at::Tensor& tensor);

// Streams a safetensors file: the entries (name, dtype code, shape; begin/end are computed) are
// declared up front, so the header can be written first, then each tensor is written in that order
// and dropped; peak memory is one tensor. Atomic: "<path>.tmp.<pid>" is written, fsynced and renamed
// over path by commit(); a writer destroyed without commit() removes the temp file.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, const std::vector<SafetensorsEntry>& entries,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // The next declared tensor; Error(Checkpoint) for another name, dtype or shape.
  void write(const std::string& name, const at::Tensor& tensor);
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes the tensors (in this order; names unique, none "__metadata__") with the metadata,
// atomically: "<path>.tmp.<pid>" is written, fsynced and renamed over path. The header is padded
// with spaces to a multiple of 8 bytes, as the reference implementation does, so every tensor of
// the usual dtypes starts aligned.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Every tensor of a file, keyed by name.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

}  // namespace atspeed
