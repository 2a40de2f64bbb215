// Status and Result: errors as values. Nothing in pheap throws across a
// library boundary; a failure travels up as a Status whose message names the
// thing that failed and says what to do about it.
#pragma once

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace pheap {

class [[nodiscard]] Status {
 public:
  enum class Code : int {
    kOk = 0,
    kInvalidArgument,  // the caller's input is wrong (name, config value)
    kNotFound,         // no such heap, root or page
    kCorruption,       // stored bytes fail their checksum or structure
    kIoError,          // the OS refused an operation
    kBusy,             // another process holds the store, or the range
    kUnsupported,      // the kernel or format lacks a feature
    kTimeout,          // peers did not answer in time
    kSuperseded,       // a newer writer term took the heap
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, EINVAL, std::move(m)}; }
  // With a more precise errno than EINVAL (e.g. ENAMETOOLONG).
  static Status InvalidArgument(std::string m, int err) { return {Code::kInvalidArgument, err, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, ENOENT, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, EIO, std::move(m)}; }
  static Status IoError(std::string m, int err) { return {Code::kIoError, err, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, EBUSY, std::move(m)}; }
  static Status Unsupported(std::string m) { return {Code::kUnsupported, ENOTSUP, std::move(m)}; }
  static Status Timeout(std::string m) { return {Code::kTimeout, ETIMEDOUT, std::move(m)}; }
  static Status Superseded(std::string m) { return {Code::kSuperseded, ESTALE, std::move(m)}; }
  // An OS call failed: `what` names the call and its object; errno's text is
  // appended.
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return state_ == nullptr; }
  Code code() const { return ok() ? Code::kOk : state_->code; }
  // The errno a C caller sees for this status (0 when ok).
  int err() const { return ok() ? 0 : state_->err; }
  const std::string& message() const;
  std::string ToString() const;
  // The code as a stable lower-case word ("not_found"), for JSON output.
  const char* CodeName() const;
  // Prefixes context: "opening heap 'x': " + message.
  Status Annotate(const std::string& context) const;

 private:
  struct State {
    Code code;
    int err;
    std::string msg;
  };
  Status(Code c, int err, std::string m)
      : state_(std::make_shared<const State>(State{c, err, std::move(m)})) {}
  std::shared_ptr<const State> state_;
};

// A value or the Status that explains its absence.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : status_(std::move(s)) {}    // NOLINT: implicit by design
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

#define PHEAP_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::pheap::Status _st = (expr);            \
    if (!_st.ok()) return _st;               \
  } while (0)

}  // namespace pheap
