// Hydra-style configuration on yaml-cpp.
//
// configs/config.yaml holds a `defaults:` list that picks one file per group
// (`- model: target_small` loads configs/model/target_small.yaml under the key `model`), then its
// own keys, which override the group files. Command-line overrides, applied in order:
//   group=option   swap the file of a defaults group (configs/<group>/<option>.yaml)
//   a.b.c=value    set an existing key (value parsed as YAML: 3, 1e-3, true, [1, 2], text)
//   +a.b.c=value   add a key that does not exist yet
// Every leaf remembers the file (or "command line") it came from, so a typed reader can name the
// key path and the file in its error. Typed sections read themselves through ConfigSection.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"

namespace atspeed {

class Config {
 public:
  Config() = default;

  // Composes <config_dir>/<name>.yaml with its defaults and the overrides. Throws Error(Config).
  static Config compose(const std::string& config_dir, const std::string& name,
                        const std::vector<std::string>& overrides);
  // A config read back from a resolved yaml text (e.g. stored in a checkpoint); `origin` names it.
  static Config from_yaml(const std::string& text, const std::string& origin);

  const YAML::Node& root() const { return root_; }
  // The node at a dotted key path, or an undefined node.
  YAML::Node at(const std::string& key_path) const;
  bool has(const std::string& key_path) const;
  // Where a key (or its nearest ancestor) was set: a file path or "command line".
  std::string origin(const std::string& key_path) const;
  // The resolved config as yaml text (no defaults list).
  std::string to_yaml() const;
  // Writes the resolved config to <dir>/config.yaml (creating dir) atomically; returns the path.
  std::string save_to_dir(const std::string& dir) const;

  // The group options picked for this config (e.g. {"model": "target_small"}).
  const std::map<std::string, std::string>& choices() const { return choices_; }

 private:
  void merge(YAML::Node dst, const YAML::Node& src, const std::string& prefix, const std::string& origin);
  void apply_override(const std::string& text);

  YAML::Node root_ = YAML::Node(YAML::NodeType::Map);
  std::map<std::string, std::string> origins_;
  std::map<std::string, std::string> choices_;
};

// Typed access to one section (a map) of a Config. Reads keys into struct fields; a key that is
// absent keeps the field's default. finish() fails on any key that was not read, so a typo in a
// yaml file or an override is an error naming the key path and the file it came from.
class ConfigSection {
 public:
  ConfigSection(const Config& config, std::string path);

  template <typename T>
  ConfigSection& get(const std::string& key, T& out) {
    read_keys_.insert(key);
    YAML::Node node = node_ ? YAML::Node(node_[key]) : YAML::Node();
    if (!node.IsDefined() || node.IsNull()) return *this;
    try {
      if constexpr (is_vector<T>::value) {
        if (!node.IsSequence()) fail(key, "expected a list");
      } else {
        if (!node.IsScalar()) fail(key, "expected a scalar");
      }
      out = node.as<T>();
    } catch (const YAML::Exception&) {
      fail(key, "wrong type for value '" + YAML::Dump(node) + "' (expected " + type_name<T>() + ")");
    }
    return *this;
  }
  // A nested section, e.g. ConfigSection(c, "train").sub("optimizer").
  ConfigSection sub(const std::string& key);
  bool has(const std::string& key) const;
  // Throws Error(Config) naming `path.key` and its origin.
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;
  // Errors on keys that were never read.
  void finish() const;
  const std::string& path() const { return path_; }

 private:
  template <typename T> struct is_vector : std::false_type {};
  template <typename T> struct is_vector<std::vector<T>> : std::true_type {};
  template <typename T> static std::string type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true/false";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (is_vector<T>::value) return "a list";
    else return "a value";
  }

  const Config* config_;
  std::string path_;
  YAML::Node node_;
  std::set<std::string> read_keys_;
};

// For validate(): throws Error(Config) "<key_path>: <problem>" unless cond holds.
// read_section() below adds the file the key came from.
void config_ensure(bool cond, const std::string& key_path, const std::string& problem);

// Reads a typed section: T must have `void read(ConfigSection&)` and `void validate() const`
// (validate names keys as "<section>.<key>"). Errors gain " (set in <file>)".
template <typename T>
T read_section(const Config& config, const std::string& path) {
  T out;
  ConfigSection section(config, path);
  out.read(section);
  section.finish();
  try {
    out.validate();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Config) throw;
    const std::string key = e.message().substr(0, e.message().find(':'));
    throw Error(ErrorKind::Config, e.message() + " (set in " + config.origin(key) + ")", __FILE__, __LINE__);
  }
  return out;
}

// Finds the configs directory: the explicit one if given, else $ATSPEED_CONFIG_DIR, else the
// source tree's configs/ (compiled in), else <dir of the executable>/../configs.
std::string find_config_dir(const std::string& explicit_dir);

}  // namespace atspeed
