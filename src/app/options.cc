#include "options.h"

#include <CLI/CLI.hpp>
#include <iostream>

namespace cyborgfs::app {

Options ParseOptions(int argc, char** argv, int& exit_code) {
  Options o;
  CLI::App cli{"cyborgfs: the host's hardware accelerators as a filesystem (the OpenStack Cyborg accelerator API)",
               "cyborgfs"};
  // Required, but said once: CLI11 would mark the argument and the option REQUIRED each.
  cli.add_option("MOUNTPOINT,--mountpoint", o.mountpoint, "folder to mount on (required: the argument or the option)");
  cli.set_config("--config", kDefaultConfig,
                 "file of options, one \"key = value\" per line (keys: the long options without --)");
  cli.allow_config_extras(false);  // a misspelt key is an error, not a silent default
  cli.add_option("--db", o.database, "SQLite database file, created if missing")->capture_default_str();
  cli.add_option("--drivers", o.drivers, "comma-separated host drivers: pci, fake, none")->capture_default_str();
  cli.add_option("--sysfs-root", o.sysfs_root, "the sysfs tree the pci driver reads and writes")->capture_default_str();
  cli.add_option("--pci-ids", o.pci_ids, "pci.ids file for device names (default: the system's)");
  cli.add_option("--device-table", o.device_table, "file of extra accelerator ids: <vendor>:<device> <TYPE>");
  cli.add_option("--sync", o.sync,
                 "what a successful write survives: normal (a crash of the daemon) or full (also a power cut)")
      ->capture_default_str()
      ->check(CLI::IsMember({"normal", "full"}));
  cli.add_option("--rescan-interval", o.rescan_interval,
                 "seconds between rescans of the drivers (0: only at start and when asked through the rescan file)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400 * 365));
  cli.add_option("--fake-devices", o.fake_devices, "how many devices the fake driver reports")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cli.add_option("--host", o.host, "this host's name (default: the system host name)");
  cli.add_option("--admin-group", o.admin_group,
                 "group (name or number) whose members may change accelerators, as root may (default: root only)");
  cli.add_flag("-f,--foreground", o.foreground, "stay in the foreground");
  cli.add_option("-o,--mount-option", o.mount_options, "FUSE mount options, passed through (allow_other, ...)")
      ->allow_extra_args(false)
      ->take_all();
  cli.add_option("--audit-log", o.audit_log, "also append the audit trail to this file (reopened on SIGHUP)");
  cli.add_option("--log-file", o.log_file,
                 "log to this file (reopened on SIGHUP); default: stderr in the foreground, else syslog, or "
                 "DATABASE.log where there is no syslog socket");
  cli.add_option("--scratch-limit", o.scratch_limit, "MiB all scratch files may hold together")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cli.add_option("--api-socket", o.api_socket, "unix socket of the REST API (\"none\": no REST API)")
      ->capture_default_str();
  cli.add_option("--api-listen", o.api_listen, "also serve the REST API over TCP on ADDR:PORT (off by default)");
  cli.add_option("--api-token-file", o.api_token_file,
                 "file holding the bearer token TCP clients must send (required with --api-listen)");
  cli.add_option("--fleet", o.fleet,
                 "publish this host's accelerators to the fleet's PostgreSQL (a libpq connection string or URI; off "
                 "by default)");
  cli.add_option("--fleet-lease", o.fleet_lease, "seconds this host stays up in the fleet without renewing its lease")
      ->capture_default_str()
      ->check(CLI::Range(3, 86400));
  cli.add_option("--fleet-bind-timeout", o.fleet_bind_timeout,
                 "seconds an accelerator request may wait for its host to bind it before it fails")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cli.add_flag("--check", o.check,
               "check the options, the database and the mountpoint (clearing a dead cyborgfs mount), then exit; "
               "changes nothing else")
      ->configurable(false);
  cli.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  cli.set_version_flag("--version", std::string("cyborgfs ") + kVersion);
  exit_code = -1;
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    exit_code = cli.exit(e);
  } catch (const CLI::CallForVersion& e) {
    exit_code = cli.exit(e);
  } catch (const CLI::ConfigError& e) {  // CLI11 says "INI was not able to parse <key>"
    std::cerr << "cyborgfs: config file: " << e.what()
              << " (its keys are the long options without --, but check, config, help and version)\n";
    exit_code = kUsageError;
  } catch (const CLI::ParseError& e) {
    std::cerr << "cyborgfs: " << e.what() << " (see cyborgfs --help)\n";
    exit_code = kUsageError;
  }
  if (exit_code < 0 && !o.api_listen.empty() && o.api_token_file.empty()) {
    std::cerr << "cyborgfs: --api-listen needs --api-token-file: over TCP every request must show the token\n";
    exit_code = kUsageError;
  }
  if (exit_code < 0 && o.mountpoint.empty()) {
    std::cerr << "cyborgfs: a MOUNTPOINT is required: the argument, --mountpoint, or the config file's mountpoint"
                 " key (see cyborgfs --help)\n";
    exit_code = kUsageError;
  }
  return o;
}

}  // namespace cyborgfs::app
