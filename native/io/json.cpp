// JSON files with errors that name the file.
#include "io/json.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "io/fs.h"

namespace qsae {

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::strerror(errno), ")");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    fail(path, ": invalid JSON (", e.what(), ")");
  }
}

void write_json_file(const std::string& path, const json& value) { write_file_atomic(path, value.dump(2) + "\n"); }

}  // namespace qsae
