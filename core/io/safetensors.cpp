#include "core/io/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "core/errors.h"

namespace atspeed {

// The format is little-endian; so are all hosts we build for. A big-endian port would byte-swap here.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation refuses headers above 100 MB; a larger one is a corrupt length field,
// and reading it would allocate whatever the garbage says.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeInfo {
  const char* code;
  at::ScalarType type;
  int64_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& code) {
  for (const auto& d : kDtypes)
    if (code == d.code) return &d;
  return nullptr;
}

std::string supported_codes() {
  std::string out;
  for (const auto& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.code);
  return out;
}

// A read-only, private mapping of a whole file (nothing mapped for an empty file).
struct Mapping {
  void* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data != nullptr) ::munmap(data, size);
  }
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(data); }
};

}  // namespace

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct SafetensorsReader::Impl {
  std::string path;
  Mapping map;
  uint64_t data_start = 0;  // 8 + header length
  std::map<std::string, std::string> metadata;
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, size_t> index;

  [[noreturn]] void fail(const std::string& what) const { ATSPEED_THROW(Checkpoint, "safetensors ", path, ": ", what); }

  void open() {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("not a regular file");
    }
    map.size = static_cast<size_t>(st.st_size);
    if (map.size > 0) {
      void* p = ::mmap(nullptr, map.size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail(std::string("cannot map: ") + std::strerror(err));
      }
      map.data = p;
    }
    ::close(fd);  // the mapping keeps the file alive
  }

  void parse_header() {
    if (map.size < 8) fail("truncated: " + std::to_string(map.size) + " bytes, shorter than the 8-byte header length");
    uint64_t n = 0;
    std::memcpy(&n, map.bytes(), 8);
    if (n > kMaxHeaderBytes) fail("header length " + std::to_string(n) + " is implausible (corrupt or not safetensors)");
    if (n > map.size - 8)
      fail("truncated: header length " + std::to_string(n) + " but only " + std::to_string(map.size - 8) +
           " bytes follow it");
    data_start = 8 + n;
    const char* text = reinterpret_cast<const char*>(map.bytes() + 8);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text, text + n);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail("header is not a JSON object");

    const uint64_t data_size = map.size - data_start;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
          metadata[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      auto bad = [&](const std::string& what) { fail("tensor '" + name + "': " + what); };
      if (!v.is_object()) bad("entry is not an object");
      for (auto f = v.begin(); f != v.end(); ++f)
        if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") bad("unknown field '" + f.key() + "'");
      if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string dtype");
      if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-list shape");
      if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        bad("data_offsets must be [begin, end]");
      SafetensorsEntry e;
      e.name = name;
      e.dtype = v["dtype"].get<std::string>();
      const DtypeInfo* dt = find_dtype(e.dtype);
      if (dt == nullptr) bad("unsupported dtype '" + e.dtype + "' (supported: " + supported_codes() + ")");
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
        const uint64_t dim = d.get<uint64_t>();
        if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) bad("shape entry too large");
        e.shape.push_back(static_cast<int64_t>(dim));
      }
      // Byte count with an overflow check: a hostile shape must not wrap around to a plausible size.
      uint64_t bytes = static_cast<uint64_t>(dt->size);
      if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
        bytes = 0;
      } else {
        for (int64_t d : e.shape) {
          const uint64_t dim = static_cast<uint64_t>(d);
          if (bytes > std::numeric_limits<uint64_t>::max() / dim) bad("shape size overflows");
          bytes *= dim;
        }
      }
      for (const auto& o : v["data_offsets"])
        if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
      const uint64_t begin = v["data_offsets"][0].get<uint64_t>(), end = v["data_offsets"][1].get<uint64_t>();
      if (begin > end) bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] run backwards");
      if (end > data_size)
        bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] beyond the data region of " +
            std::to_string(data_size) + " bytes (truncated file?)");
      if (end - begin != bytes)
        bad("holds " + std::to_string(end - begin) + " bytes but shape x " + e.dtype + " needs " +
            std::to_string(bytes));
      e.begin = static_cast<int64_t>(begin);
      e.end = static_cast<int64_t>(end);
      entries.push_back(std::move(e));
    }
    std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    // Sorted by begin, two non-empty tensors overlap exactly when one starts before its
    // predecessor ends; empty tensors occupy no bytes and cannot overlap anything.
    const SafetensorsEntry* prev = nullptr;
    for (const auto& e : entries) {
      if (e.begin == e.end) continue;
      if (prev != nullptr && e.begin < prev->end)
        fail("tensor '" + e.name + "' [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") overlaps '" +
             prev->name + "' [" + std::to_string(prev->begin) + ", " + std::to_string(prev->end) + ")");
      prev = &e;
    }
    for (size_t i = 0; i < entries.size(); ++i) index[entries[i].name] = i;
  }
};

SafetensorsReader::SafetensorsReader(std::string path) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->open();
  impl_->parse_header();
}

SafetensorsReader::~SafetensorsReader() = default;
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;
SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&&) noexcept = default;

const std::string& SafetensorsReader::path() const { return impl_->path; }
const std::map<std::string, std::string>& SafetensorsReader::metadata() const { return impl_->metadata; }
const std::vector<SafetensorsEntry>& SafetensorsReader::list() const { return impl_->entries; }
bool SafetensorsReader::contains(const std::string& name) const { return impl_->index.count(name) > 0; }

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = impl_->index.find(name);
  if (it == impl_->index.end()) impl_->fail("no tensor '" + name + "'");
  return impl_->entries[it->second];
}

at::Tensor SafetensorsReader::read(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const DtypeInfo* dt = find_dtype(e.dtype);
  at::Tensor out = at::empty(e.shape, at::TensorOptions().dtype(dt->type));
  // memcpy rather than from_blob over the mapping: offsets need not be aligned to the element size,
  // and the result must outlive the reader.
  if (e.end > e.begin) {
    const uint8_t* src = impl_->map.bytes() + impl_->data_start + e.begin;
    std::memcpy(out.data_ptr(), src, e.end - e.begin);
    // Drop the pages just copied from this process's resident set: a conversion that reads a 13 GB
    // checkpoint tensor by tensor then peaks near its largest tensor, not near the file size.
    // The mapping is private and read-only, so a later read simply faults the pages in again.
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = reinterpret_cast<uintptr_t>(src) & ~(page - 1);
    const uintptr_t hi = reinterpret_cast<uintptr_t>(src) + static_cast<uintptr_t>(e.end - e.begin);
    ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }
  return out;
}

std::string safetensors_dtype_code(const at::Tensor& tensor) {
  for (const auto& d : kDtypes)
    if (d.type == tensor.scalar_type()) return d.code;
  ATSPEED_THROW(Checkpoint, "safetensors: dtype ", tensor.scalar_type(), " is not supported (supported: ",
                supported_codes(), ")");
}

struct SafetensorsWriter::Impl {
  std::string path, temp;
  int fd = -1;
  std::vector<SafetensorsEntry> entries;
  size_t next = 0;

  [[noreturn]] void fail_io(const std::string& what, int err) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(temp.c_str());
    ATSPEED_THROW(Checkpoint, "safetensors ", path, ": ", what, ": ", std::strerror(err));
  }
  void write_all(const void* p, size_t size) {
    const char* c = static_cast<const char*>(p);
    while (size > 0) {
      const ssize_t w = ::write(fd, c, size);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail_io("write to " + temp + " failed", errno);
      c += w;
      size -= static_cast<size_t>(w);
    }
  }
};

SafetensorsWriter::SafetensorsWriter(std::string path, const std::vector<SafetensorsEntry>& entries,
                                     const std::map<std::string, std::string>& metadata)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  const std::string& p = impl_->path;
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (SafetensorsEntry e : entries) {
    ATSPEED_ENSURE(Checkpoint, e.name != "__metadata__" && !e.name.empty(), "safetensors ", p, ": bad tensor name '",
                   e.name, "'");
    ATSPEED_ENSURE(Checkpoint, !header.contains(e.name), "safetensors ", p, ": tensor '", e.name, "' given twice");
    const DtypeInfo* dt = find_dtype(e.dtype);
    ATSPEED_ENSURE(Checkpoint, dt != nullptr, "safetensors ", p, ": dtype ", e.dtype, " is not supported");
    const uint64_t bytes = static_cast<uint64_t>(e.numel()) * static_cast<uint64_t>(at::elementSize(dt->type));
    e.begin = static_cast<int64_t>(offset);
    e.end = static_cast<int64_t>(offset + bytes);
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    impl_->entries.push_back(std::move(e));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  impl_->temp = p + ".tmp." + std::to_string(::getpid());
  impl_->fd = ::open(impl_->temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ATSPEED_ENSURE(Checkpoint, impl_->fd >= 0, "safetensors ", p, ": cannot create ", impl_->temp, ": ", std::strerror(errno));
  impl_->write_all(&n, 8);
  impl_->write_all(text.data(), text.size());
}

SafetensorsWriter::~SafetensorsWriter() {
  if (impl_ && impl_->fd >= 0) {
    ::close(impl_->fd);
    ::unlink(impl_->temp.c_str());
  }
}

void SafetensorsWriter::write(const std::string& name, const at::Tensor& tensor) {
  Impl& m = *impl_;
  ATSPEED_ENSURE(Checkpoint, m.fd >= 0, "safetensors ", m.path, ": write after commit");
  ATSPEED_ENSURE(Checkpoint, m.next < m.entries.size() && m.entries[m.next].name == name, "safetensors ", m.path,
                 ": tensor '", name, "' written out of the declared order");
  const SafetensorsEntry& e = m.entries[m.next];
  ATSPEED_ENSURE(Checkpoint, safetensors_dtype_code(tensor) == e.dtype && tensor.sizes().vec() == e.shape,
                 "safetensors ", m.path, ": tensor '", name, "' is ", safetensors_dtype_code(tensor), " ", tensor.sizes(),
                 ", declared ", e.dtype, " ", at::IntArrayRef(e.shape));
  const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
  m.write_all(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  ++m.next;
}

void SafetensorsWriter::commit() {
  Impl& m = *impl_;
  ATSPEED_ENSURE(Checkpoint, m.fd >= 0, "safetensors ", m.path, ": committed twice");
  ATSPEED_ENSURE(Checkpoint, m.next == m.entries.size(), "safetensors ", m.path, ": ", m.entries.size() - m.next,
                 " declared tensors were not written");
  // The bytes must be on disk before the rename makes them the file (see CheckpointWriter::commit).
  if (::fsync(m.fd) != 0) m.fail_io("cannot fsync " + m.temp, errno);
  ::close(m.fd);
  m.fd = -1;
  if (::rename(m.temp.c_str(), m.path.c_str()) != 0) {
    const int err = errno;
    ::unlink(m.temp.c_str());
    ATSPEED_THROW(Checkpoint, "safetensors ", m.path, ": cannot rename ", m.temp, " over it: ", std::strerror(err));
  }
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : tensors) {
    SafetensorsEntry e;
    e.name = name;
    e.dtype = safetensors_dtype_code(tensor);
    e.shape = tensor.sizes().vec();
    entries.push_back(std::move(e));
  }
  SafetensorsWriter writer(path, entries, metadata);
  for (const auto& [name, tensor] : tensors) writer.write(name, tensor);
  writer.commit();
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  SafetensorsReader reader(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& e : reader.list()) out.emplace(e.name, reader.read(e.name));
  return out;
}

}  // namespace atspeed
