// `cyborgfs list` and `cyborgfs show`: the host's accelerators for people,
// asked of a running daemon over its API socket (the same binary; no mount
// or database is touched).
//
//   cyborgfs list [--api-socket PATH] [--json] [--fleet]
//       one row per accelerator: name, uuid, type, model, status, health,
//       attached to, NUMA node (with --fleet: every host's, host first), in
//       columns that fit the terminal (the model, then the name, are cut to
//       fit; not cut when stdout is not a terminal); --json: the records
//   cyborgfs show [--api-socket PATH] <name|uuid>
//       one accelerator's files, one per line
//
// Exit status: 0; 1 no daemon answers on the socket, or it refused (the
// message says which and why); 2 a usage error.
#pragma once

namespace cyborgfs::app {

// Whether argv names a client command ("list", "show").
bool IsClientCommand(int argc, char** argv);
int RunClient(int argc, char** argv);

}  // namespace cyborgfs::app
