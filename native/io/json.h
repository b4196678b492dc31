// JSON file reading and writing with errors that name the file (config.json, index files, cfg.json, ...).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qsae {
using json = nlohmann::json;

// Reads and parses a JSON file. Missing file or bad JSON: qsae::Error "PATH: ...".
json read_json_file(const std::string& path);
// Writes JSON atomically, pretty-printed.
void write_json_file(const std::string& path, const json& value);
}  // namespace qsae
