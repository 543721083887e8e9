#include "sysfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cyborgfs {

std::optional<uint32_t> ParseSysfsHex(const std::optional<std::string>& text) {
  if (!text || text->empty()) return std::nullopt;
  char* end = nullptr;
  const unsigned long value = std::strtoul(text->c_str(), &end, 16);
  if (*end != '\0' || value > 0xffffffUL) return std::nullopt;
  return static_cast<uint32_t>(value);
}

int ParseSysfsCount(const std::optional<std::string>& text) {
  if (!text || text->empty()) return -1;
  char* end = nullptr;
  const long value = std::strtol(text->c_str(), &end, 10);
  return *end == '\0' && value >= 0 && value < (1L << 30) ? static_cast<int>(value) : -1;
}

Sysfs::Sysfs(std::string root) : root_(std::move(root)) {}

std::string Sysfs::Full(const std::string& path) const { return root_ + "/" + path; }

std::optional<std::string> Sysfs::Read(const std::string& path) const {
  std::ifstream in(Full(path));
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\0')) value.pop_back();
  return value;
}

std::optional<std::string> Sysfs::LinkName(const std::string& path) const {
  std::error_code ec;
  const auto target = std::filesystem::read_symlink(Full(path), ec);
  if (ec) return std::nullopt;
  return target.filename().string();
}

std::vector<std::string> Sysfs::List(const std::string& path) const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(Full(path), ec)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Sysfs::Exists(const std::string& path) const {
  struct stat st {};
  return lstat(Full(path).c_str(), &st) == 0;
}

Status Sysfs::Write(const std::string& path, const std::string& value) const {
  const int fd = open(Full(path).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return Status::IoError("open " + path + ": " + std::strerror(errno));
  const std::string line = value + "\n";
  const ssize_t written = write(fd, line.data(), line.size());
  const int write_errno = errno;
  close(fd);
  if (written < 0) return Status::IoError("write \"" + value + "\" to " + path + ": " + std::strerror(write_errno));
  if (static_cast<size_t>(written) != line.size()) return Status::IoError("short write to " + path);
  return Status::Ok();
}

}  // namespace cyborgfs
