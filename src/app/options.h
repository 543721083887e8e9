// The command line of cyborgfs.
#pragma once

#include <string>
#include <vector>

namespace cyborgfs::app {

inline constexpr const char* kVersion = "0.1.0";
inline constexpr const char* kDefaultDatabase = "/var/lib/cyborgfs/cyborgfs.db";
inline constexpr const char* kDefaultConfig = CYBORGFS_CONFIG;  // set by CMakeLists.txt
inline constexpr const char* kDefaultApiSocket = "/run/cyborgfs/api.sock";

struct Options {
  std::string mountpoint;
  std::string database = kDefaultDatabase;
  std::string drivers = "pci";
  int fake_devices = 4;
  std::string sysfs_root = "/sys";
  std::string pci_ids;          // empty: libpci's default
  std::string device_table;     // empty: the built-in table only
  int rescan_interval = 60;     // seconds; 0: only at start and on demand
  std::string sync = "normal";  // normal | full: what an acknowledged write survives
  std::string host;             // empty: the system host name
  std::string admin_group;      // a group name or number; empty: only root may change anything
  bool foreground = false;
  std::vector<std::string> mount_options;  // each -o argument
  std::string log_level = "info";
  std::string audit_log;   // a file the audit lines also go to; empty: none
  std::string log_file;    // a file the log goes to; empty: stderr, or syslog once detached (see logging.h)
  int scratch_limit = 64;  // MiB all scratch files may hold together
  std::string api_socket = kDefaultApiSocket;  // the REST API's unix socket; "none": off
  std::string api_listen;                      // ADDR:PORT the REST API also serves over TCP; empty: none
  std::string api_token_file;                  // the bearer token TCP clients must show
  std::string fleet;                           // the fleet's PostgreSQL (libpq conninfo); empty: no fleet
  int fleet_lease = 30;                        // seconds a host stays up without renewing its lease
  int fleet_bind_timeout = 60;                 // seconds a claimed request may wait to be bound
  bool check = false;                          // check everything a start needs, then exit
};

// The exit status of a command line or config file cyborgfs cannot take (a
// bad option, key or value, including an unknown driver or group and a bad
// device table); 1 is for a start that cannot serve with good options (the
// database, the mountpoint, the mount).
inline constexpr int kUsageError = 2;

// Parses argv, and the config file (--config, by default kDefaultConfig if it
// exists: "key = value" lines, the keys being the long options without "--",
// the command line winning). On --help/--version prints and sets `exit_code`
// to 0; on a bad command line or config file prints one line to stderr and
// sets it to kUsageError. Otherwise `exit_code` is -1 and the options are returned.
Options ParseOptions(int argc, char** argv, int& exit_code);

}  // namespace cyborgfs::app
