#include "core/io/checkpoint.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/errors.h"

namespace atspeed {

namespace {

namespace fs = std::filesystem;

// Above this a dataset is chunked (with a checksum); at or below it is stored inside its object
// header, which the v2 format checksums too. Object header messages are limited to 64 KiB.
constexpr uint64_t kCompactMaxBytes = 16 * 1024;
// Chunks of about this size: large enough for fast sequential I/O, small enough that a rank reading
// a row block of a big embedding touches little more than its rows.
constexpr uint64_t kChunkTargetBytes = 4 * 1024 * 1024;

const char* const kFixedRootAttributes[] = {"format_version", "kind", "config_yaml", "fingerprint"};

bool is_fixed_root_attribute(const std::string& key) {
  return std::any_of(std::begin(kFixedRootAttributes), std::end(kFixedRootAttributes),
                     [&](const char* fixed) { return key == fixed; });
}

// HDF5 prints its whole error stack to stderr by default; we turn failures into Errors instead.
// The setting is per thread in a thread-safe build, so every entry point calls this.
void quiet_hdf5() {
  thread_local bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

// The most specific messages of the current HDF5 error stack (e.g. "truncated file: eof = ..."),
// innermost first; clears the stack.
std::string hdf5_detail() {
  std::vector<std::string> messages;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* err, void* data) -> herr_t {
        auto* out = static_cast<std::vector<std::string>*>(data);
        if (err->desc && *err->desc && out->size() < 3 &&
            std::find(out->begin(), out->end(), err->desc) == out->end())
          out->push_back(err->desc);
        return 0;
      },
      &messages);
  H5Eclear2(H5E_DEFAULT);
  std::string joined;
  for (const auto& m : messages) joined += (joined.empty() ? "" : "; ") + m;
  return joined;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  const std::string detail = hdf5_detail();
  ATSPEED_THROW(Checkpoint, "checkpoint ", path, ": cannot ", what,
                detail.empty() ? std::string() : " (hdf5: " + detail + ")");
}

hid_t check_id(hid_t id, const std::string& path, const std::string& what) {
  if (id < 0) fail(path, what);
  return id;
}

void check(herr_t status, const std::string& path, const std::string& what) {
  if (status < 0) fail(path, what);
}

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  // Closes and returns the status, for closes whose failure matters (the file in commit()).
  herr_t close() {
    const herr_t status = (id_ >= 0 && closer_) ? closer_(id_) : 0;
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

Handle make_plist(hid_t cls, const std::string& path) {
  return Handle(check_id(H5Pcreate(cls), path, "create a property list"), H5Pclose);
}

// ---- dtypes ------------------------------------------------------------------------------------

struct DtypeSpec {
  std::string name;
  at::ScalarType scalar;
  hid_t file_type;  // little-endian storage type
  hid_t mem_type;   // native type read into / written from the tensor's memory
};

const std::vector<DtypeSpec>& dtype_specs() {
  // 16-bit floats travel as uint16 bit patterns: HDF5 1.10 has no half or bfloat16 type, and a bit
  // copy is exact. bool is one byte of 0/1 in torch, stored as uint8.
  static const std::vector<DtypeSpec> specs = {
      {"float32", at::kFloat, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT},
      {"bfloat16", at::kBFloat16, H5T_STD_U16LE, H5T_NATIVE_UINT16},
      {"float16", at::kHalf, H5T_STD_U16LE, H5T_NATIVE_UINT16},
      {"float64", at::kDouble, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE},
      {"int64", at::kLong, H5T_STD_I64LE, H5T_NATIVE_INT64},
      {"int32", at::kInt, H5T_STD_I32LE, H5T_NATIVE_INT32},
      {"int16", at::kShort, H5T_STD_I16LE, H5T_NATIVE_INT16},
      {"int8", at::kChar, H5T_STD_I8LE, H5T_NATIVE_INT8},
      {"uint8", at::kByte, H5T_STD_U8LE, H5T_NATIVE_UINT8},
      {"bool", at::kBool, H5T_STD_U8LE, H5T_NATIVE_UINT8},
  };
  return specs;
}

const DtypeSpec* spec_by_scalar(at::ScalarType scalar) {
  for (const auto& spec : dtype_specs())
    if (spec.scalar == scalar) return &spec;
  return nullptr;
}

const DtypeSpec* spec_by_name(const std::string& name) {
  for (const auto& spec : dtype_specs())
    if (spec.name == name) return &spec;
  return nullptr;
}

// Same storage class, size and signedness (byte order may differ: HDF5 converts that).
bool same_storage(hid_t a, hid_t b) {
  const H5T_class_t cls = H5Tget_class(a);
  if (cls != H5Tget_class(b) || H5Tget_size(a) != H5Tget_size(b)) return false;
  return cls != H5T_INTEGER || H5Tget_sign(a) == H5Tget_sign(b);
}

// A dataset without a "dtype" attribute (written by another tool): the torch dtype its HDF5 type
// maps to without loss, or nullptr.
const DtypeSpec* infer_spec(hid_t file_type) {
  for (const auto& spec : dtype_specs()) {
    if (spec.scalar == at::kBFloat16 || spec.scalar == at::kHalf || spec.scalar == at::kBool) continue;
    if (same_storage(file_type, spec.file_type)) return &spec;
  }
  return nullptr;
}

// ---- names and groups --------------------------------------------------------------------------

std::vector<std::string> split_path(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    parts.push_back(name.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

void validate_name(const std::string& path, const std::string& name, const char* what) {
  bool ok = !name.empty();
  if (ok)
    for (const auto& part : split_path(name)) ok = ok && !part.empty() && part != "." && part != "..";
  ATSPEED_ENSURE(Checkpoint, ok, "checkpoint ", path, ": invalid ", what, " name '", name,
                 "' (use non-empty parts separated by single '/')");
}

H5I_type_t object_type(hid_t file, const std::string& name, const std::string& path) {
  Handle object(check_id(H5Oopen(file, name.c_str(), H5P_DEFAULT), path, "open object '" + name + "'"), H5Oclose);
  return H5Iget_type(object.get());
}

// Whether `name` exists, walking it one link at a time: H5Lexists fails rather than answering
// when a parent is missing or is a dataset.
bool link_exists(hid_t file, const std::string& name, const std::string& path) {
  const auto parts = split_path(name);
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    prefix += (prefix.empty() ? "" : "/") + parts[i];
    const htri_t exists = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (exists < 0) fail(path, "look up '" + prefix + "'");
    if (exists == 0) return false;
    if (i + 1 < parts.size() && object_type(file, prefix, path) != H5I_GROUP) return false;
  }
  return true;
}

// ---- attributes --------------------------------------------------------------------------------

Handle scalar_space(const std::string& path) {
  return Handle(check_id(H5Screate(H5S_SCALAR), path, "create a dataspace"), H5Sclose);
}

void write_attribute(hid_t object, const std::string& key, hid_t file_type, hid_t mem_type, const void* value,
                     const std::string& path, const std::string& where) {
  const std::string what = "write attribute '" + key + "' of " + where;
  const htri_t exists = H5Aexists(object, key.c_str());
  check(exists, path, what);
  if (exists > 0) check(H5Adelete(object, key.c_str()), path, what);
  Handle space = scalar_space(path);
  Handle attr(check_id(H5Acreate2(object, key.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), path, what),
              H5Aclose);
  check(H5Awrite(attr.get(), mem_type, value), path, what);
}

void write_string_attribute(hid_t object, const std::string& key, const std::string& value, const std::string& path,
                            const std::string& where) {
  // Fixed-length, NUL-terminated UTF-8: h5py and h5dump read it as a plain string.
  Handle type(check_id(H5Tcopy(H5T_C_S1), path, "create a string type"), H5Tclose);
  check(H5Tset_size(type.get(), value.size() + 1), path, "size a string type");
  check(H5Tset_strpad(type.get(), H5T_STR_NULLTERM), path, "set string padding");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), path, "set string charset");
  write_attribute(object, key, type.get(), type.get(), value.c_str(), path, where);
}

std::string where_name(const std::string& group) { return group.empty() ? "the root" : "group '" + group + "'"; }

// Reads one scalar attribute of string, integer or float class; nullopt for other shapes/classes.
std::optional<AttributeValue> read_attribute(hid_t object, const std::string& key, const std::string& path,
                                             const std::string& where) {
  const std::string what = "read attribute '" + key + "' of " + where;
  Handle attr(check_id(H5Aopen(object, key.c_str(), H5P_DEFAULT), path, what), H5Aclose);
  Handle space(check_id(H5Aget_space(attr.get()), path, what), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  Handle type(check_id(H5Aget_type(attr.get()), path, what), H5Tclose);
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      Handle mem(check_id(H5Tcopy(H5T_C_S1), path, what), H5Tclose);
      // HDF5 converts between paddings but not between character sets.
      check(H5Tset_cset(mem.get(), H5Tget_cset(type.get())), path, what);
      const htri_t variable = H5Tis_variable_str(type.get());
      check(variable, path, what);
      if (variable > 0) {
        // Variable-length strings come from other writers (h5py's default).
        check(H5Tset_size(mem.get(), H5T_VARIABLE), path, what);
        char* buffer = nullptr;
        check(H5Aread(attr.get(), mem.get(), &buffer), path, what);
        std::string value = buffer ? buffer : "";
        H5free_memory(buffer);
        return value;
      }
      const size_t size = H5Tget_size(type.get());
      if (size == 0) fail(path, what);
      check(H5Tset_size(mem.get(), size), path, what);
      check(H5Tset_strpad(mem.get(), H5T_STR_NULLPAD), path, what);
      std::string buffer(size, '\0');
      check(H5Aread(attr.get(), mem.get(), buffer.data()), path, what);
      buffer.resize(strnlen(buffer.data(), size));
      return buffer;
    }
    case H5T_INTEGER: {
      int64_t value = 0;
      check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), path, what);
      return value;
    }
    case H5T_FLOAT: {
      double value = 0;
      check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value), path, what);
      return value;
    }
    default:
      return std::nullopt;
  }
}

std::vector<std::string> attribute_names(hid_t object, const std::string& path, const std::string& where) {
  std::vector<std::string> names;
  hsize_t index = 0;
  check(H5Aiterate2(
            object, H5_INDEX_NAME, H5_ITER_INC, &index,
            [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
              static_cast<std::vector<std::string>*>(data)->push_back(name);
              return 0;
            },
            &names),
        path, "list the attributes of " + where);
  return names;
}

const char* type_name(const AttributeValue& value) {
  switch (value.index()) {
    case 0: return "a string";
    case 1: return "an int64";
    default: return "a float64";
  }
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<std::string> checkpoint_dtypes() {
  std::vector<std::string> names;
  for (const auto& spec : dtype_specs()) names.push_back(spec.name);
  return names;
}

// ================================================================================================
// Writer

struct CheckpointWriter::Impl {
  std::string path;
  std::string temp_path;
  Handle file;
  Handle group_plist;  // creation-order-indexed groups, so listing follows write order
  bool committed = false;
  int deflate_level = 0;
  int64_t chunk_rows = 0;  // > 0: cap on dimension 0 of a chunk

  void ensure_open() const {
    ATSPEED_ENSURE(Checkpoint, file.valid(), "checkpoint ", path, ": the writer was already committed");
  }

  // The object id of the root or of a group, creating the group (and its parents) if needed.
  Handle open_group(const std::string& group, bool create) {
    if (group.empty()) return Handle(check_id(H5Gopen2(file.get(), "/", H5P_DEFAULT), path, "open the root"), H5Gclose);
    validate_name(path, group, "group");
    std::string prefix;
    for (const auto& part : split_path(group)) {
      prefix += (prefix.empty() ? "" : "/") + part;
      const htri_t exists = H5Lexists(file.get(), prefix.c_str(), H5P_DEFAULT);
      check(exists, path, "look up '" + prefix + "'");
      if (exists > 0) {
        ATSPEED_ENSURE(Checkpoint, object_type(file.get(), prefix, path) == H5I_GROUP, "checkpoint ", path, ": '",
                       prefix, "' is a tensor, not a group");
      } else {
        ATSPEED_CHECK(create, "group '", prefix, "' missing");
        Handle created(check_id(H5Gcreate2(file.get(), prefix.c_str(), H5P_DEFAULT, group_plist.get(), H5P_DEFAULT),
                                path, "create group '" + prefix + "'"),
                       H5Gclose);
      }
    }
    return Handle(check_id(H5Gopen2(file.get(), group.c_str(), H5P_DEFAULT), path, "open group '" + group + "'"),
                  H5Gclose);
  }
};

CheckpointWriter::CheckpointWriter(std::string path, const CheckpointAttributes& attributes)
    : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  auto& s = *impl_;
  s.path = std::move(path);
  s.temp_path = s.path + ".tmp." + std::to_string(::getpid());
  const fs::path parent = fs::path(s.path).parent_path();
  ATSPEED_ENSURE(Checkpoint, parent.empty() || fs::is_directory(parent), "checkpoint ", s.path, ": directory ",
                 parent.string(), " does not exist");
  auto ensure_extra = [&](const std::string& key) {
    ATSPEED_ENSURE(Checkpoint, !is_fixed_root_attribute(key), "checkpoint ", s.path, ": extra attribute '", key,
                   "' collides with a fixed root attribute");
  };
  for (const auto& entry : attributes.strings) ensure_extra(entry.first);
  for (const auto& entry : attributes.ints) ensure_extra(entry.first);
  for (const auto& entry : attributes.doubles) ensure_extra(entry.first);

  Handle fcpl = make_plist(H5P_FILE_CREATE, s.path);
  check(H5Pset_link_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), s.path,
        "set link creation order");
  s.group_plist = make_plist(H5P_GROUP_CREATE, s.path);
  check(H5Pset_link_creation_order(s.group_plist.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), s.path,
        "set link creation order");
  Handle fapl = make_plist(H5P_FILE_ACCESS, s.path);
  // The 1.8+ format checksums all metadata and stores large attributes (a long config) densely.
  check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), s.path, "set format bounds");
  // No metadata or small-data aggregation blocks: their unused tails would stay in the file as
  // slack bytes that no checksum covers (and that make the file bigger).
  check(H5Pset_meta_block_size(fapl.get(), 0), s.path, "set metadata block size");
  check(H5Pset_small_data_block_size(fapl.get(), 0), s.path, "set small data block size");
  // STRONG: closing the file closes everything in it, so commit() knows the bytes are out.
  check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), s.path, "set close degree");
#if H5_VERSION_GE(1, 10, 7)
  // Lock, but do not fail on file systems without locks (NFS, Lustre).
  check(H5Pset_file_locking(fapl.get(), true, true), s.path, "set file locking");
#endif
  s.file = Handle(check_id(H5Fcreate(s.temp_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), s.path,
                           "create temporary file " + s.temp_path),
                  H5Fclose);
  try {
    Handle root = s.open_group("", false);
    const int64_t version = kCheckpointFormatVersion;
    write_attribute(root.get(), "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version, s.path, "the root");
    write_string_attribute(root.get(), "kind", attributes.kind, s.path, "the root");
    write_string_attribute(root.get(), "config_yaml", attributes.config_yaml, s.path, "the root");
    write_string_attribute(root.get(), "fingerprint", attributes.fingerprint, s.path, "the root");
    for (const auto& [key, value] : attributes.strings) write_string_attribute(root.get(), key, value, s.path, "the root");
    for (const auto& [key, value] : attributes.ints)
      write_attribute(root.get(), key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, s.path, "the root");
    for (const auto& [key, value] : attributes.doubles)
      write_attribute(root.get(), key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, s.path, "the root");
  } catch (...) {
    s.file.reset();
    std::error_code ec;
    fs::remove(s.temp_path, ec);
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (!impl_ || impl_->committed) return;
  impl_->group_plist.reset();
  impl_->file.reset();
  std::error_code ec;
  fs::remove(impl_->temp_path, ec);
  H5Eclear2(H5E_DEFAULT);
}

const std::string& CheckpointWriter::path() const { return impl_->path; }
const std::string& CheckpointWriter::temp_path() const { return impl_->temp_path; }

void CheckpointWriter::write(const std::string& name, const at::Tensor& tensor) {
  quiet_hdf5();
  auto& s = *impl_;
  s.ensure_open();
  validate_name(s.path, name, "tensor");
  ATSPEED_ENSURE(Checkpoint, tensor.defined(), "checkpoint ", s.path, ": tensor '", name, "' is undefined");
  const DtypeSpec* spec = spec_by_scalar(tensor.scalar_type());
  ATSPEED_ENSURE(Checkpoint, spec, "checkpoint ", s.path, ": tensor '", name, "' has dtype ", tensor.scalar_type(),
                 ", which checkpoints do not store");
  ATSPEED_ENSURE(Checkpoint, tensor.dim() <= H5S_MAX_RANK, "checkpoint ", s.path, ": tensor '", name, "' has ",
                 tensor.dim(), " dimensions, more than HDF5's ", H5S_MAX_RANK);
  const at::Tensor data = tensor.detach().to(at::kCPU).contiguous();

  const size_t slash = name.rfind('/');
  if (slash != std::string::npos) s.open_group(name.substr(0, slash), true);
  ATSPEED_ENSURE(Checkpoint, !link_exists(s.file.get(), name, s.path), "checkpoint ", s.path, ": '", name,
                 "' was already written");

  const std::string what = "write tensor '" + name + "'";
  const int rank = static_cast<int>(data.dim());
  std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  Handle space(check_id(rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr), s.path, what),
               H5Sclose);
  Handle dcpl = make_plist(H5P_DATASET_CREATE, s.path);
  const uint64_t numel = static_cast<uint64_t>(data.numel());
  const uint64_t element = data.element_size();
  if (rank == 0 || (numel > 0 && numel * element <= kCompactMaxBytes)) {
    check(H5Pset_layout(dcpl.get(), H5D_COMPACT), s.path, what);
  } else if (numel > 0) {
    // Whole trailing dimensions while they fit the target, then a slice of the next one: row blocks
    // of a matrix, so hyperslab reads of rows touch only their chunks.
    std::vector<hsize_t> chunk(rank, 1);
    uint64_t inner = element;
    for (int i = rank - 1; i >= 0; --i) {
      if (inner * dims[i] <= kChunkTargetBytes) {
        chunk[i] = dims[i];
        inner *= dims[i];
      } else {
        chunk[i] = std::max<uint64_t>(1, kChunkTargetBytes / inner);
        break;
      }
    }
    if (s.chunk_rows > 0 && rank >= 2) chunk[0] = std::min<hsize_t>(chunk[0], static_cast<hsize_t>(s.chunk_rows));
    check(H5Pset_chunk(dcpl.get(), rank, chunk.data()), s.path, what);
    if (s.deflate_level > 0) {
      check(H5Pset_shuffle(dcpl.get()), s.path, what);
      check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(s.deflate_level)), s.path, what);
    }
    // Last, so the checksum covers the bytes as stored (after compression).
    check(H5Pset_fletcher32(dcpl.get()), s.path, what);
  }
  Handle dataset(check_id(H5Dcreate2(s.file.get(), name.c_str(), spec->file_type, space.get(), H5P_DEFAULT, dcpl.get(),
                                     H5P_DEFAULT),
                          s.path, what),
                 H5Dclose);
  if (numel > 0)
    check(H5Dwrite(dataset.get(), spec->mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()), s.path, what);
  write_string_attribute(dataset.get(), "dtype", spec->name, s.path, "tensor '" + name + "'");
}

void CheckpointWriter::set_chunk_rows(int64_t rows) {
  ATSPEED_ENSURE(Checkpoint, rows >= 0, "checkpoint ", impl_->path, ": chunk rows ", rows, " < 0");
  impl_->chunk_rows = rows;
}

void CheckpointWriter::set_compression(int deflate_level) {
  ATSPEED_ENSURE(Checkpoint, deflate_level >= 0 && deflate_level <= 9, "checkpoint ", impl_->path,
                 ": deflate level ", deflate_level, " is outside 0..9");
  ATSPEED_ENSURE(Checkpoint, deflate_level == 0 || H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0, "checkpoint ",
                 impl_->path, ": this HDF5 library was built without deflate (zlib)");
  impl_->deflate_level = deflate_level;
}

void CheckpointWriter::set_string_attribute(const std::string& group, const std::string& key, const std::string& value) {
  quiet_hdf5();
  impl_->ensure_open();
  Handle object = impl_->open_group(group, true);
  write_string_attribute(object.get(), key, value, impl_->path, where_name(group));
}

void CheckpointWriter::set_int_attribute(const std::string& group, const std::string& key, int64_t value) {
  quiet_hdf5();
  impl_->ensure_open();
  Handle object = impl_->open_group(group, true);
  write_attribute(object.get(), key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, impl_->path, where_name(group));
}

void CheckpointWriter::set_double_attribute(const std::string& group, const std::string& key, double value) {
  quiet_hdf5();
  impl_->ensure_open();
  Handle object = impl_->open_group(group, true);
  write_attribute(object.get(), key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, impl_->path, where_name(group));
}

void CheckpointWriter::commit() {
  quiet_hdf5();
  auto& s = *impl_;
  s.ensure_open();
  check(H5Fflush(s.file.get(), H5F_SCOPE_GLOBAL), s.path, "flush " + s.temp_path);
  s.group_plist.reset();
  check(s.file.close(), s.path, "close " + s.temp_path);

  // HDF5's flush only reaches the page cache; the data must be on disk before the rename makes it
  // the checkpoint, or a power loss could leave a renamed but empty file.
  const int fd = ::open(s.temp_path.c_str(), O_RDONLY | O_CLOEXEC);
  ATSPEED_ENSURE(Checkpoint, fd >= 0, "checkpoint ", s.path, ": cannot reopen ", s.temp_path, ": ",
                 std::strerror(errno));
  const int sync_status = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  ATSPEED_ENSURE(Checkpoint, sync_status == 0, "checkpoint ", s.path, ": cannot fsync ", s.temp_path, ": ",
                 std::strerror(sync_errno));
  ATSPEED_ENSURE(Checkpoint, ::rename(s.temp_path.c_str(), s.path.c_str()) == 0, "checkpoint ", s.path,
                 ": cannot rename ", s.temp_path, " over it: ", std::strerror(errno));
  s.committed = true;

  // The rename itself is durable only once the directory is synced.
  fs::path dir = fs::path(s.path).parent_path();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ATSPEED_ENSURE(Checkpoint, dir_fd >= 0, "checkpoint ", s.path, ": cannot open directory ", dir.string(), ": ",
                 std::strerror(errno));
  const int dir_status = ::fsync(dir_fd);
  const int dir_errno = errno;
  ::close(dir_fd);
  // Some file systems cannot sync directories (EINVAL); the rename has still happened.
  ATSPEED_ENSURE(Checkpoint, dir_status == 0 || dir_errno == EINVAL, "checkpoint ", s.path,
                 ": cannot fsync directory ", dir.string(), ": ", std::strerror(dir_errno));
}

// ================================================================================================
// Reader

struct CheckpointReader::Impl {
  std::string path;
  Handle file;
  CheckpointAttributes attributes;
  mutable std::atomic<int64_t> bytes_read{0};  // payload returned by read()/read_block(); readers may share threads

  // The root or a group; an invalid handle when the group does not exist.
  Handle open_group(const std::string& group) const {
    if (group.empty())
      return Handle(check_id(H5Gopen2(file.get(), "/", H5P_DEFAULT), path, "open the root"), H5Gclose);
    validate_name(path, group, "group");
    if (!link_exists(file.get(), group, path) || object_type(file.get(), group, path) != H5I_GROUP) return Handle();
    return Handle(check_id(H5Gopen2(file.get(), group.c_str(), H5P_DEFAULT), path, "open group '" + group + "'"),
                  H5Gclose);
  }

  std::optional<AttributeValue> attribute(const std::string& group, const std::string& key) const {
    Handle object = open_group(group);
    if (!object.valid()) return std::nullopt;
    const htri_t exists = H5Aexists(object.get(), key.c_str());
    check(exists, path, "look up attribute '" + key + "' of " + where_name(group));
    if (exists == 0) return std::nullopt;
    auto value = read_attribute(object.get(), key, path, where_name(group));
    ATSPEED_ENSURE(Checkpoint, value.has_value(), "checkpoint ", path, ": attribute '", key, "' of ",
                   where_name(group), " is not a scalar string or number");
    return value;
  }

  // Names of all datasets (tensors) and groups, in creation order where the file tracks it.
  void visit(std::vector<std::string>* datasets, std::vector<std::string>* groups) const {
    struct Visit {
      std::vector<std::string> datasets, groups;
    } visit;
    auto callback = [](hid_t parent, const char* name, const H5L_info_t* info, void* data) -> herr_t {
      if (info->type != H5L_TYPE_HARD) return 0;
      auto* out = static_cast<Visit*>(data);
      const hid_t object = H5Oopen(parent, name, H5P_DEFAULT);
      if (object < 0) return -1;
      const H5I_type_t type = H5Iget_type(object);
      H5Oclose(object);
      if (type == H5I_DATASET) out->datasets.emplace_back(name);
      if (type == H5I_GROUP) out->groups.emplace_back(name);
      return 0;
    };
    // Files from other writers may lack the creation-order index: fall back to names.
    if (H5Lvisit(file.get(), H5_INDEX_CRT_ORDER, H5_ITER_INC, callback, &visit) < 0) {
      H5Eclear2(H5E_DEFAULT);
      visit = Visit{};
      check(H5Lvisit(file.get(), H5_INDEX_NAME, H5_ITER_INC, callback, &visit), path, "list the tensors");
    }
    if (datasets) *datasets = std::move(visit.datasets);
    if (groups) *groups = std::move(visit.groups);
  }

  bool is_tensor(const std::string& name) const {
    if (name.empty() || name.front() == '/' || name.back() == '/') return false;
    return link_exists(file.get(), name, path) && object_type(file.get(), name, path) == H5I_DATASET;
  }

  [[noreturn]] void missing_tensor(const std::string& name) const {
    std::vector<std::string> names;
    visit(&names, nullptr);
    // Show the names closest to the request first (longest common prefix), e.g. the other
    // projections of the same layer for a typo'd one.
    auto common = [&](const std::string& other) {
      size_t n = 0;
      while (n < name.size() && n < other.size() && name[n] == other[n]) ++n;
      return n;
    };
    std::stable_sort(names.begin(), names.end(),
                     [&](const std::string& a, const std::string& b) { return common(a) > common(b); });
    std::string shown;
    for (size_t i = 0; i < names.size() && i < 5; ++i) shown += (i ? ", " : "") + names[i];
    ATSPEED_THROW(Checkpoint, "checkpoint ", path, ": tensor '", name, "' not found (the file has ", names.size(),
                  " tensors", names.empty() ? "" : ", e.g. " + shown, ")");
  }

  struct OpenTensor {
    Handle dataset;
    Handle space;
    const DtypeSpec* spec = nullptr;
    std::vector<int64_t> shape;
  };

  OpenTensor open_tensor(const std::string& name) const {
    if (!is_tensor(name)) missing_tensor(name);
    const std::string what = "read tensor '" + name + "'";
    OpenTensor t;
    t.dataset = Handle(check_id(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), path, what), H5Dclose);
    Handle type(check_id(H5Dget_type(t.dataset.get()), path, what), H5Tclose);
    const htri_t has_dtype = H5Aexists(t.dataset.get(), "dtype");
    check(has_dtype, path, what);
    if (has_dtype > 0) {
      const auto dtype = read_attribute(t.dataset.get(), "dtype", path, "tensor '" + name + "'");
      const std::string dtype_name = dtype && dtype->index() == 0 ? std::get<std::string>(*dtype) : "?";
      t.spec = spec_by_name(dtype_name);
      ATSPEED_ENSURE(Checkpoint, t.spec, "checkpoint ", path, ": tensor '", name, "' has unknown dtype '", dtype_name,
                     "'");
      ATSPEED_ENSURE(Checkpoint, same_storage(type.get(), t.spec->file_type), "checkpoint ", path, ": tensor '", name,
                     "' says dtype ", dtype_name, " but its HDF5 storage type does not match");
    } else {
      t.spec = infer_spec(type.get());
      ATSPEED_ENSURE(Checkpoint, t.spec, "checkpoint ", path, ": tensor '", name,
                     "' has no dtype attribute and an HDF5 type that maps to no torch dtype");
    }
    t.space = Handle(check_id(H5Dget_space(t.dataset.get()), path, what), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(t.space.get());
    check(rank, path, what);
    std::vector<hsize_t> dims(rank);
    if (rank > 0) check(H5Sget_simple_extent_dims(t.space.get(), dims.data(), nullptr), path, what);
    t.shape.assign(dims.begin(), dims.end());
    return t;
  }

  at::Tensor read(const OpenTensor& t, const std::string& name, hid_t mem_space, const std::vector<int64_t>& shape) const {
    const bool is_bool = t.spec->scalar == at::kBool;
    at::Tensor out = at::empty(shape, at::TensorOptions().dtype(is_bool ? at::kByte : t.spec->scalar));
    if (out.numel() > 0)
      check(H5Dread(t.dataset.get(), t.spec->mem_type, mem_space, mem_space == H5S_ALL ? H5S_ALL : t.space.get(),
                    H5P_DEFAULT, out.data_ptr()),
            path, "read tensor '" + name + "'");
    bytes_read += static_cast<int64_t>(out.nbytes());
    // Any nonzero byte is true (a foreign writer may not use 0/1).
    return is_bool ? out.ne(0) : out;
  }
};

CheckpointReader::CheckpointReader(std::string path, std::optional<std::string> expected_kind)
    : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  auto& s = *impl_;
  s.path = std::move(path);
  std::error_code ec;
  const auto status = fs::status(s.path, ec);
  ATSPEED_ENSURE(Checkpoint, fs::exists(status), "checkpoint file not found: ", s.path);
  ATSPEED_ENSURE(Checkpoint, fs::is_regular_file(status), "checkpoint ", s.path, " is not a regular file");
  const htri_t is_hdf5 = H5Fis_hdf5(s.path.c_str());
  if (is_hdf5 <= 0) {
    const std::string detail = hdf5_detail();
    ATSPEED_THROW(Checkpoint, "checkpoint ", s.path, " is not an HDF5 file (or its header is corrupt)",
                  detail.empty() ? "" : " (hdf5: " + detail + ")");
  }
  Handle fapl = make_plist(H5P_FILE_ACCESS, s.path);
  check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), s.path, "set close degree");
#if H5_VERSION_GE(1, 10, 7)
  check(H5Pset_file_locking(fapl.get(), true, true), s.path, "set file locking");
#endif
  const hid_t file = H5Fopen(s.path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (file < 0) {
    const std::string detail = hdf5_detail();
    ATSPEED_THROW(Checkpoint, "cannot open checkpoint ", s.path, ": the file is truncated or corrupt",
                  detail.empty() ? "" : " (hdf5: " + detail + ")");
  }
  s.file = Handle(file, H5Fclose);

  const auto version = s.attribute("", "format_version");
  ATSPEED_ENSURE(Checkpoint, version.has_value(), "checkpoint ", s.path,
                 " has no format_version attribute: not an atspeed checkpoint");
  ATSPEED_ENSURE(Checkpoint, version->index() == 1, "checkpoint ", s.path, ": format_version is ", type_name(*version),
                 ", expected an int64");
  s.attributes.format_version = std::get<int64_t>(*version);
  ATSPEED_ENSURE(Checkpoint, s.attributes.format_version == kCheckpointFormatVersion, "checkpoint ", s.path,
                 ": format_version ", s.attributes.format_version, " is not supported (expected ",
                 kCheckpointFormatVersion, ")");

  for (const auto& [key, value] : group_attributes("")) {
    if (key == "format_version") continue;
    if (key == "kind" || key == "config_yaml" || key == "fingerprint") {
      ATSPEED_ENSURE(Checkpoint, value.index() == 0, "checkpoint ", s.path, ": attribute '", key, "' is ",
                     type_name(value), ", expected a string");
      const auto& text = std::get<std::string>(value);
      (key == "kind" ? s.attributes.kind : key == "config_yaml" ? s.attributes.config_yaml : s.attributes.fingerprint) =
          text;
    } else if (value.index() == 0) {
      s.attributes.strings[key] = std::get<std::string>(value);
    } else if (value.index() == 1) {
      s.attributes.ints[key] = std::get<int64_t>(value);
    } else {
      s.attributes.doubles[key] = std::get<double>(value);
    }
  }
  if (expected_kind) {
    ATSPEED_ENSURE(Checkpoint, !s.attributes.kind.empty(), "checkpoint ", s.path, " has no kind, expected '",
                   *expected_kind, "'");
    ATSPEED_ENSURE(Checkpoint, s.attributes.kind == *expected_kind, "checkpoint ", s.path, " is a '",
                   s.attributes.kind, "' checkpoint, expected '", *expected_kind, "'");
  }
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const std::string& CheckpointReader::path() const { return impl_->path; }
const CheckpointAttributes& CheckpointReader::attributes() const { return impl_->attributes; }

std::vector<TensorInfo> CheckpointReader::list() const {
  quiet_hdf5();
  std::vector<std::string> names;
  impl_->visit(&names, nullptr);
  std::vector<TensorInfo> infos;
  infos.reserve(names.size());
  for (const auto& name : names) infos.push_back(info(name));
  return infos;
}

std::vector<std::string> CheckpointReader::groups() const {
  quiet_hdf5();
  std::vector<std::string> names;
  impl_->visit(nullptr, &names);
  return names;
}

bool CheckpointReader::contains(const std::string& name) const {
  quiet_hdf5();
  return impl_->is_tensor(name);
}

TensorInfo CheckpointReader::info(const std::string& name) const {
  quiet_hdf5();
  const auto t = impl_->open_tensor(name);
  return TensorInfo{name, t.spec->name, t.shape};
}

at::Tensor CheckpointReader::read(const std::string& name) const {
  quiet_hdf5();
  const auto t = impl_->open_tensor(name);
  return impl_->read(t, name, H5S_ALL, t.shape);
}

at::Tensor CheckpointReader::read_block(const std::string& name, int dim, int64_t begin, int64_t end) const {
  quiet_hdf5();
  const auto& s = *impl_;
  const auto t = s.open_tensor(name);
  const std::string what = "read block of tensor '" + name + "'";
  ATSPEED_ENSURE(Checkpoint, dim == 0 || dim == 1, "checkpoint ", s.path, ": ", what, ": dim must be 0 or 1, got ", dim);
  const int rank = static_cast<int>(t.shape.size());
  ATSPEED_ENSURE(Checkpoint, dim < rank, "checkpoint ", s.path, ": ", what, ": dim ", dim, " of a ", rank, "-d tensor");
  ATSPEED_ENSURE(Checkpoint, 0 <= begin && begin <= end && end <= t.shape[dim], "checkpoint ", s.path, ": ", what,
                 ": range [", begin, ", ", end, ") is outside dim ", dim, " of size ", t.shape[dim]);
  std::vector<hsize_t> start(rank, 0), count(t.shape.begin(), t.shape.end());
  start[dim] = static_cast<hsize_t>(begin);
  count[dim] = static_cast<hsize_t>(end - begin);
  std::vector<int64_t> shape = t.shape;
  shape[dim] = end - begin;
  if (end == begin) return s.read(t, name, H5S_ALL, shape);  // nothing to read: an empty tensor
  check(H5Sselect_hyperslab(t.space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), s.path, what);
  Handle mem_space(check_id(H5Screate_simple(rank, count.data(), nullptr), s.path, what), H5Sclose);
  return s.read(t, name, mem_space.get(), shape);
}

int64_t CheckpointReader::bytes_read() const { return impl_->bytes_read.load(); }

std::optional<std::string> CheckpointReader::string_attribute(const std::string& group, const std::string& key) const {
  quiet_hdf5();
  const auto value = impl_->attribute(group, key);
  if (!value) return std::nullopt;
  ATSPEED_ENSURE(Checkpoint, value->index() == 0, "checkpoint ", impl_->path, ": attribute '", key, "' of ",
                 where_name(group), " is ", type_name(*value), ", expected a string");
  return std::get<std::string>(*value);
}

std::optional<int64_t> CheckpointReader::int_attribute(const std::string& group, const std::string& key) const {
  quiet_hdf5();
  const auto value = impl_->attribute(group, key);
  if (!value) return std::nullopt;
  ATSPEED_ENSURE(Checkpoint, value->index() == 1, "checkpoint ", impl_->path, ": attribute '", key, "' of ",
                 where_name(group), " is ", type_name(*value), ", expected an int64");
  return std::get<int64_t>(*value);
}

std::optional<double> CheckpointReader::double_attribute(const std::string& group, const std::string& key) const {
  quiet_hdf5();
  const auto value = impl_->attribute(group, key);
  if (!value) return std::nullopt;
  if (value->index() == 1) return static_cast<double>(std::get<int64_t>(*value));
  ATSPEED_ENSURE(Checkpoint, value->index() == 2, "checkpoint ", impl_->path, ": attribute '", key, "' of ",
                 where_name(group), " is ", type_name(*value), ", expected a float64");
  return std::get<double>(*value);
}

std::map<std::string, AttributeValue> CheckpointReader::group_attributes(const std::string& group) const {
  quiet_hdf5();
  const auto& s = *impl_;
  std::map<std::string, AttributeValue> out;
  Handle object = s.open_group(group);
  if (!object.valid()) return out;
  for (const auto& key : attribute_names(object.get(), s.path, where_name(group))) {
    auto value = read_attribute(object.get(), key, s.path, where_name(group));
    if (value) out.emplace(key, std::move(*value));
  }
  return out;
}

void save_checkpoint(const std::string& path, const CheckpointAttributes& attributes,
                     const std::map<std::string, at::Tensor>& tensors) {
  CheckpointWriter writer(path, attributes);
  for (const auto& [name, tensor] : tensors) writer.write(name, tensor);
  writer.commit();
}

std::map<std::string, at::Tensor> load_checkpoint(const std::string& path,
                                                  const std::optional<std::string>& expected_kind) {
  CheckpointReader reader(path, expected_kind);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& info : reader.list()) tensors.emplace(info.name, reader.read(info.name));
  return tensors;
}

}  // namespace atspeed
