#include "core/config.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace atspeed {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_path(const std::string& key_path) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(key_path);
  while (std::getline(in, part, '.')) parts.push_back(part);
  return parts;
}

YAML::Node load_file(const std::string& path) {
  if (!fs::exists(path)) ATSPEED_THROW(Config, "config file not found: ", path);
  try {
    YAML::Node node = YAML::LoadFile(path);
    if (node.IsNull()) return YAML::Node(YAML::NodeType::Map);
    if (!node.IsMap()) ATSPEED_THROW(Config, path, ": top level must be a mapping");
    return node;
  } catch (const YAML::Exception& e) {
    ATSPEED_THROW(Config, path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid yaml: ", e.msg);
  }
}

bool is_identifier(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

std::string list_options(const fs::path& group_dir) {
  std::vector<std::string> names;
  if (fs::is_directory(group_dir))
    for (const auto& entry : fs::directory_iterator(group_dir))
      if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

}  // namespace

void Config::merge(YAML::Node dst, const YAML::Node& src, const std::string& prefix,
                   const std::string& origin) {
  for (const auto& kv : src) {
    const std::string key = kv.first.as<std::string>();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (kv.second.IsMap() && dst[key] && dst[key].IsMap()) {
      merge(dst[key], kv.second, path, origin);
    } else {
      dst[key] = YAML::Clone(kv.second);
      // Drop stale origins below a replaced subtree, then record this one.
      for (auto it = origins_.lower_bound(path + "."); it != origins_.end() && it->first.rfind(path + ".", 0) == 0;)
        it = origins_.erase(it);
      origins_[path] = origin;
      if (kv.second.IsMap()) {
        std::function<void(const YAML::Node&, const std::string&)> mark = [&](const YAML::Node& n, const std::string& p) {
          for (const auto& sub : n) {
            const std::string sp = p + "." + sub.first.as<std::string>();
            origins_[sp] = origin;
            if (sub.second.IsMap()) mark(sub.second, sp);
          }
        };
        mark(kv.second, path);
      }
    }
  }
}

Config Config::compose(const std::string& config_dir, const std::string& name,
                       const std::vector<std::string>& overrides) {
  Config config;
  const fs::path dir(config_dir);
  const std::string primary_path = (dir / (name + ".yaml")).string();
  YAML::Node primary = load_file(primary_path);

  // Group choices: the defaults list, then group=option overrides that swap them.
  std::vector<std::pair<std::string, std::string>> groups;
  if (primary["defaults"]) {
    const YAML::Node defaults = primary["defaults"];
    if (!defaults.IsSequence()) ATSPEED_THROW(Config, primary_path, ": 'defaults' must be a list of 'group: option'");
    for (const auto& item : defaults) {
      if (!item.IsMap() || item.size() != 1)
        ATSPEED_THROW(Config, primary_path, ": each 'defaults' entry must be one 'group: option'");
      groups.emplace_back(item.begin()->first.as<std::string>(), item.begin()->second.as<std::string>());
    }
  }
  std::vector<std::string> key_overrides;
  for (const auto& text : overrides) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
      ATSPEED_THROW(Config, "command line: override '", text, "' is not key=value, +key=value or group=option");
    const std::string key = text.substr(0, eq);
    const std::string value = text.substr(eq + 1);
    auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (group != groups.end() && is_identifier(value)) {
      if (!fs::exists(dir / key / (value + ".yaml")))
        ATSPEED_THROW(Config, "command line: ", key, "=", value, ": no file ", (dir / key / (value + ".yaml")).string(),
                      " (available: ", list_options(dir / key), ")");
      group->second = value;
    } else {
      key_overrides.push_back(text);
    }
  }
  for (const auto& [group, option] : groups) {
    const std::string path = (dir / group / (option + ".yaml")).string();
    if (!fs::exists(path))
      ATSPEED_THROW(Config, primary_path, ": defaults: ", group, ": ", option, ": no file ", path,
                    " (available: ", list_options(dir / group), ")");
    YAML::Node wrapped(YAML::NodeType::Map);
    wrapped[group] = load_file(path);
    config.merge(config.root_, wrapped, "", path);
    config.choices_[group] = option;
  }
  YAML::Node body = YAML::Clone(primary);
  body.remove("defaults");
  config.merge(config.root_, body, "", primary_path);
  for (const auto& text : key_overrides) config.apply_override(text);
  return config;
}

void Config::apply_override(const std::string& text) {
  const auto eq = text.find('=');
  bool add = text[0] == '+';
  const std::string key_path = text.substr(add ? 1 : 0, eq - (add ? 1 : 0));
  const std::string value_text = text.substr(eq + 1);
  const auto parts = split_path(key_path);
  if (parts.empty() || std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); }))
    ATSPEED_THROW(Config, "command line: '", text, "': bad key path '", key_path, "'");
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    ATSPEED_THROW(Config, "command line: '", text, "': value is not valid yaml: ", e.msg);
  }
  if (value_text.empty()) value = YAML::Node(std::string());
  const bool exists = has(key_path);
  if (!add && !exists && key_path == "model.tp")  // the tensor-parallel degree is a launch setting, not a model's
    ATSPEED_THROW(Config, "command line: model.tp: unknown key; the tensor-parallel degree is dist.tp (e.g. "
                          "`mpirun -np 2 atspeed serve dist.tp=2`)");
  if (!add && !exists)
    ATSPEED_THROW(Config, "command line: ", key_path, ": unknown key (use +", key_path, "=... to add a new key)");
  if (add && exists)
    ATSPEED_THROW(Config, "command line: +", key_path, ": key already exists (drop the '+' to override it)");
  // Walk down, creating maps for '+'.
  YAML::Node wrapped(YAML::NodeType::Map);
  // yaml-cpp pitfall: `cur = cur[k]` would overwrite the node cur refers to; reset() re-points it.
  YAML::Node cur = wrapped;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    cur.reset(cur[parts[i]]);
  }
  cur[parts.back()] = value;
  if (exists && at(key_path).IsMap() && !value.IsMap())
    ATSPEED_THROW(Config, "command line: ", key_path, ": is a section, cannot set it to a scalar");
  merge(root_, wrapped, "", "command line");
}

Config Config::from_yaml(const std::string& text, const std::string& origin) {
  Config config;
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    ATSPEED_THROW(Config, origin, ": invalid yaml: ", e.msg);
  }
  if (node.IsNull()) return config;
  if (!node.IsMap()) ATSPEED_THROW(Config, origin, ": top level must be a mapping");
  config.merge(config.root_, node, "", origin);
  return config;
}

YAML::Node Config::at(const std::string& key_path) const {
  const YAML::Node& root = root_;  // const operator[] never inserts
  YAML::Node cur(root);
  for (const auto& part : split_path(key_path)) {
    if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& parent = cur;
    YAML::Node child = parent[part];
    if (!child.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(child);
  }
  return cur;
}

bool Config::has(const std::string& key_path) const {
  YAML::Node n = at(key_path);
  return n.IsDefined();
}

std::string Config::origin(const std::string& key_path) const {
  std::string path = key_path;
  while (!path.empty()) {
    auto it = origins_.find(path);
    if (it != origins_.end()) return it->second;
    const auto dot = path.rfind('.');
    if (dot == std::string::npos) break;
    path = path.substr(0, dot);
  }
  return "defaults";
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << root_;
  return std::string(out.c_str()) + "\n";
}

std::string Config::save_to_dir(const std::string& dir) const {
  fs::create_directories(dir);
  const fs::path path = fs::path(dir) / "config.yaml";
  const fs::path tmp = fs::path(dir) / (".config.yaml.tmp." + std::to_string(::getpid()));
  {
    std::ofstream f(tmp);
    f << to_yaml();
    if (!f) ATSPEED_THROW(Config, "cannot write ", tmp.string());
  }
  fs::rename(tmp, path);
  return path.string();
}

ConfigSection::ConfigSection(const Config& config, std::string path)
    : config_(&config), path_(std::move(path)), node_(config.at(path_)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap())
    ATSPEED_THROW(Config, path_, ": expected a section (mapping) (set in ", config.origin(path_), ")");
}

ConfigSection ConfigSection::sub(const std::string& key) {
  read_keys_.insert(key);
  return ConfigSection(*config_, path_ + "." + key);
}

bool ConfigSection::has(const std::string& key) const {
  return node_.IsDefined() && node_.IsMap() && node_[key].IsDefined();
}

void ConfigSection::fail(const std::string& key, const std::string& problem) const {
  const std::string full = path_ + "." + key;
  ATSPEED_THROW(Config, full, ": ", problem, " (set in ", config_->origin(full), ")");
}

void ConfigSection::finish() const {
  if (!node_.IsDefined() || !node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.as<std::string>();
    if (!read_keys_.count(key)) {
      std::string known;
      for (const auto& k : read_keys_) known += (known.empty() ? "" : ", ") + k;
      fail(key, "unknown key (known keys: " + known + ")");
    }
  }
}

void config_ensure(bool cond, const std::string& key_path, const std::string& problem) {
  if (!cond) ATSPEED_THROW(Config, key_path, ": ", problem);
}

std::string find_config_dir(const std::string& explicit_dir) {
  auto usable = [](const fs::path& d) { return fs::exists(d / "config.yaml"); };
  if (!explicit_dir.empty()) {
    if (!usable(explicit_dir)) ATSPEED_THROW(Config, "--config-dir ", explicit_dir, ": no config.yaml there");
    return explicit_dir;
  }
  if (const char* env = std::getenv("ATSPEED_CONFIG_DIR")) {
    if (!usable(env)) ATSPEED_THROW(Config, "ATSPEED_CONFIG_DIR=", env, ": no config.yaml there");
    return env;
  }
#ifdef ATSPEED_SOURCE_DIR
  if (usable(fs::path(ATSPEED_SOURCE_DIR) / "configs")) return (fs::path(ATSPEED_SOURCE_DIR) / "configs").string();
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && usable(exe.parent_path().parent_path() / "configs"))
    return (exe.parent_path().parent_path() / "configs").string();
  ATSPEED_THROW(Config, "cannot find the configs directory: pass --config-dir or set ATSPEED_CONFIG_DIR");
}

}  // namespace atspeed
