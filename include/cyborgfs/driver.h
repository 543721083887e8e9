// The host driver interface: the one seam between cyborgfs and the hardware.
//
// A driver finds the accelerators it manages and attaches them to a VM or to
// the host. The core calls a driver only while it holds that accelerator's
// operation lock, so a driver never sees two concurrent calls for the same
// address; calls for different addresses may run concurrently.
// A driver reports failures as Status (kIoError for a failed host step,
// kInvalid for a target it cannot serve, kNoDevice for a device that is gone);
// it never throws and never exits the process.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cyborgfs/host_facts.h"
#include "cyborgfs/status.h"

namespace cyborgfs {

// One device as a driver sees it.
struct DiscoveredDevice {
  std::string uuid;         // stable across restarts: derived from host and address
  std::string address;      // the driver's key for the device, e.g. "0000:3b:00.0"
  std::string name;         // suggested unique name, e.g. "gpu-0000:3b:00.0"
  std::string device_type;  // GPU, FPGA, CRYPTO, ...
  std::string acc_type;
  std::string vendor_id;   // 4 lowercase hex digits
  std::string product_id;  // 4 lowercase hex digits

  HostFacts facts;  // what the host says of it
};

// Where an accelerator is attached. Parsed from the `attach` file.
struct AttachTarget {
  enum class Kind { kVm, kHost };
  Kind kind = Kind::kVm;
  std::string id;  // instance uuid (lowercase) or host name
  // The accelerator's acc_specs (compact JSON), for what the attach should
  // be made of: the pci driver reads "vgpu_type". Set by the core.
  std::string spec = "{}";

  // "vm <uuid>" or "host <name>", the canonical text of the attach file.
  std::string ToString() const { return (kind == Kind::kVm ? "vm " : "host ") + id; }
};

class Driver {
 public:
  virtual ~Driver() = default;

  // The name shown in the `driver` file and used with --drivers.
  virtual std::string Name() const = 0;

  // Every device this driver manages right now.
  virtual Result<std::vector<DiscoveredDevice>> Discover() = 0;

  // What keeps the driver from working fully, one line each ("vfio-pci is not
  // loaded: VM attaches will fail"); empty when nothing does.
  virtual std::vector<std::string> Health() { return {}; }

  // The device at `address` as Discover() would report it now, reading that
  // device only; kNoDevice if it is gone. The core calls it after an attach
  // or detach to refresh the facts (the kernel driver changes).
  virtual Result<DiscoveredDevice> Describe(const std::string& address) = 0;

  // Whether the device, as `observed` by the last Discover(), is held as its
  // record wants: detached (`target` null) or attached to `*target`, given
  // the driver's `memory` of it (below). A rescan calls Attach or Detach only
  // for the devices where it is not (a crash between two steps of an attach,
  // a device rebound by hand, mediated devices gone after a reboot). It may
  // read the host, cheaply, and changes nothing.
  virtual bool Agrees(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) = 0;

  // `memory` is what the driver keeps about one device between calls: a
  // JSON object ("{}" at first) that the core stores with the accelerator,
  // passes to every Attach and Detach of it, and stores again, changed or
  // not, with the outcome (the pci driver keeps the device's own kernel
  // driver there, to restore it at detach).

  // Attaches the device at `address` to `target` and returns the attach
  // handle, a compact JSON object telling a compute service how to use it.
  // Attaching a device again to the target it already has succeeds. On
  // failure nothing the call did is left behind.
  virtual Result<std::string> Attach(const std::string& address, const AttachTarget& target, std::string& memory) = 0;

  // Returns the device at `address` to its detached state. Detaching a
  // detached device succeeds.
  virtual Status Detach(const std::string& address, std::string& memory) = 0;

  // Adds to `facts` (the device's, as Discover() or Describe() gave them,
  // health judged from what the device says of itself) what depends on how
  // its record holds it (`target`, `memory` as for Agrees): a device not
  // bound as its record wants, powered off while attached. It may read the
  // host, cheaply, and changes nothing. The core calls it whenever it takes
  // a device's facts into its record.
  virtual void JudgeHealth(const std::string& /*address*/, const AttachTarget* /*target*/,
                           const std::string& /*memory*/, HostFacts& /*facts*/) const {}
};

}  // namespace cyborgfs
