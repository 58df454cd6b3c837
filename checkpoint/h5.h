#pragma once
// Thin RAII and error handling over the HDF5 C API, for checkpoint/*.cpp (and the fuzz
// target). Failures become std::runtime_error carrying HDF5's own innermost message
// ("data error detected by Fletcher32 checksum", "... errno = 28, No space left on device").

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace duet::ckpt::h5 {

// HDF5 as packaged by Debian (openmpi flavour) is built without H5_HAVE_THREADSAFE: two
// threads inside the library at once corrupt it. Every checkpoint function that calls HDF5
// opens a Session, which holds one process-wide recursive lock and, while the outermost one
// lives, switches off HDF5's printing of error stacks to stderr (errors become exceptions).
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  std::unique_lock<std::recursive_mutex> lock_;
  H5E_auto2_t saved_func_ = nullptr;
  void* saved_data_ = nullptr;
  bool outermost_ = false;
};

// An HDF5 identifier, closed when the Id goes out of scope (errors at that point ignored:
// call close() where they matter, e.g. a file being written).
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_, closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0) closer_(id_);
    id_ = -1;
  }
  herr_t close() {
    const herr_t rc = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return rc;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// The current HDF5 error stack, deepest (most specific) message first, on one line.
std::string error_text();

// Throws std::runtime_error("<context>: <error_text()>") when status < 0; returns status.
std::int64_t check(std::int64_t status, std::string_view context);

// Checked constructors of owned ids.
Id checked(hid_t id, Id::Closer closer, std::string_view context);

// Files use the POSIX (sec2) driver and otherwise HDF5's default access properties, on
// purpose: HDF5 opens a virtual dataset's sources with default file locking and a weak close
// degree, and when the file is already open in this process with other settings (locking
// off, close degree strong) the open fails — silently: the read returns fill values. So no
// file here sets either. File systems without locks: HDF5_USE_FILE_LOCKING=FALSE in the
// environment, which HDF5 applies to every open alike. Callers close objects before files.
Id create_file(const std::string& path);
Id open_file(const std::string& path);  // read-only
// A read-only file from bytes in memory (the fuzz target).
Id open_file_image(const void* data, std::size_t size);

Id create_plist(hid_t cls);

// Attributes. Integer arrays are int64; strings are fixed-length, null-terminated.
void write_attr(hid_t obj, const char* name, std::span<const std::int64_t> values);
void write_attr(hid_t obj, const char* name, std::int64_t value);
void write_attr(hid_t obj, const char* name, std::string_view value);
bool has_attr(hid_t obj, const char* name);
std::vector<std::int64_t> read_attr_ints(hid_t obj, const char* name);  // throws if not an integer array
std::string read_attr_string(hid_t obj, const char* name);

// Dataspace of `shape` (scalar when empty) as hsize_t.
std::vector<hsize_t> to_hsize(std::span<const std::int64_t> v);
Id simple_space(std::span<const std::int64_t> shape);

// Selects the box [offset, offset + shape) in `space`.
void select_box(hid_t space, std::span<const std::int64_t> offset, std::span<const std::int64_t> shape);

}  // namespace duet::ckpt::h5
