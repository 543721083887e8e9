#include "client.h"

#include <httplib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cyborgfs/values.h"
#include "options.h"

namespace cyborgfs::app {
namespace {

// A GET on the daemon's API socket: the JSON body, or why not (printed by the caller).
Result<Json> Get(const std::string& socket, const std::string& path) {
  httplib::Client client(socket);
  client.set_address_family(AF_UNIX);
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  auto res = client.Get(path.c_str());
  if (!res) {
    return Status::Unavailable("no cyborgfs answers on " + socket + " (" + httplib::to_string(res.error()) +
                               " failed): is the daemon running? Another socket: --api-socket PATH");
  }
  Json body = Json::parse(res->body, nullptr, false);
  if (res->status != 200) {
    std::string message = body.is_object() && body.contains("error") && body["error"].contains("message")
                              ? body["error"]["message"].get<std::string>()
                              : "HTTP " + std::to_string(res->status);
    return res->status == 404 ? Status::NotFound(message) : Status::Invalid(message);
  }
  if (body.is_discarded()) return Status::Invalid("the daemon's answer to " + path + " is not JSON");
  return body;
}

std::string Text(const Json& record, const char* key) {
  auto it = record.find(key);
  if (it == record.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// The width of the terminal on stdout; 0 when it is not one (nothing is cut).
size_t TerminalWidth() {
  winsize size{};
  if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return 0;
  return size.ws_col;
}

// `text` cut to `width` characters (UTF-8 aware enough: never cuts inside one).
std::string Cut(const std::string& text, size_t width) {
  if (text.size() <= width) return text;
  size_t end = width > 3 ? width - 3 : 0;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

int List(const std::string& socket, bool json, bool fleet) {
  auto body = Get(socket, fleet ? "/fleet/accelerators" : "/accelerators");
  if (!body.ok()) {
    std::cerr << "cyborgfs list: " << body.status().message() << "\n";
    return 1;
  }
  const Json& records = (*body)["accelerator"];
  if (json) {
    std::cout << records.dump(2) << "\n";
    return 0;
  }
  std::vector<std::string> heads = {"NAME", "UUID", "TYPE", "MODEL", "STATUS", "HEALTH", "ATTACHED TO", "NUMA"};
  if (fleet) heads.insert(heads.begin(), "HOST");
  std::vector<std::vector<std::string>> rows;
  for (const Json& r : records) {
    std::string status = Text(r, "status");
    if (Text(r, "maintenance") == "1") status += " (maintenance)";
    std::vector<std::string> row = {Text(r, "name"), Text(r, "uuid"),   Text(r, "device_type"), Text(r, "model"),
                                    status,          Text(r, "health"), Text(r, "attach"),      Text(r, "numa_node")};
    if (fleet) row.insert(row.begin(), Text(r, "host"));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(heads.size());
  for (size_t c = 0; c < heads.size(); ++c) {
    widths[c] = heads[c].size();
    for (const auto& row : rows) widths[c] = std::max(widths[c], row[c].size());
  }
  // Too wide for the terminal: the model gives way first, then what it is attached to, the
  // uuid (to a prefix that still tells them apart), and the name last.
  if (const size_t terminal = TerminalWidth()) {
    const size_t shift = fleet ? 1 : 0;
    const std::pair<size_t, size_t> order[] = {{3 + shift, 10}, {6 + shift, 12}, {1 + shift, 8}, {0 + shift, 8}};
    for (auto [column, least] : order) {
      size_t total = heads.size() - 1;  // the spaces between columns
      for (size_t w : widths) total += w;
      if (total <= terminal) break;
      const size_t over = total - terminal;
      if (widths[column] > least) widths[column] = std::max(least, widths[column] > over ? widths[column] - over : 0);
    }
  }
  auto print = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      const bool uuid = c == (fleet ? 2u : 1u);  // cut to a prefix, as git shortens hashes
      std::string cell = uuid ? cells[c].substr(0, widths[c]) : Cut(cells[c], widths[c]);
      if (c + 1 < cells.size()) cell.resize(std::max(cell.size(), widths[c]) + 1, ' ');
      line += cell;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print(heads);
  for (const auto& row : rows) print(row);
  return 0;
}

int Show(const std::string& socket, const std::string& which) {
  const bool uuid = NormalizeUuid(which).has_value();
  std::string encoded;
  for (unsigned char c : which) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      encoded += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      encoded += hex;
    }
  }
  auto record = Get(socket, uuid ? "/accelerators/" + encoded : "/accelerators/by-name/" + encoded);
  if (!record.ok()) {
    std::cerr << "cyborgfs show: " << record.status().message() << "\n";
    return 1;
  }
  size_t width = 0;
  for (const auto& [key, value] : record->items()) width = std::max(width, key.size());
  for (const auto& [key, value] : record->items()) {
    std::string text = value.is_string() ? value.get<std::string>() : value.is_null() ? "" : value.dump();
    if (key == "health_reasons" && value.is_array()) {
      text.clear();
      for (const Json& reason : value) text += (text.empty() ? "" : "; ") + reason.get<std::string>();
    }
    std::string line = key + ":" + std::string(width - key.size() + 1, ' ') + text;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
  return 0;
}

}  // namespace

bool IsClientCommand(int argc, char** argv) {
  return argc > 1 && (std::string(argv[1]) == "list" || std::string(argv[1]) == "show");
}

int RunClient(int argc, char** argv) {
  CLI::App app{"cyborgfs list | show: the accelerators of a running cyborgfs, for people"};
  app.require_subcommand(1);
  std::string socket = kDefaultApiSocket;
  bool json = false, fleet = false;
  std::string which;
  CLI::App* list = app.add_subcommand("list", "one row per accelerator");
  list->add_option("--api-socket", socket, "the daemon's API socket")->capture_default_str();
  list->add_flag("--json", json, "the records, as JSON");
  list->add_flag("--fleet", fleet, "every host's accelerators (the daemon runs with --fleet)");
  CLI::App* show = app.add_subcommand("show", "one accelerator's files");
  show->add_option("--api-socket", socket, "the daemon's API socket")->capture_default_str();
  show->add_option("accelerator", which, "its name or uuid")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return list->parsed() ? List(socket, json, fleet) : Show(socket, which);
}

}  // namespace cyborgfs::app
