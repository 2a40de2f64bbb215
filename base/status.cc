#include "base/status.h"

#include <cstring>

namespace pheap {

Status Status::FromErrno(const std::string& what, int err) {
  return Status(Code::kIoError, err, what + ": " + std::strerror(err));
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return ok() ? kEmpty : state_->msg;
}

std::string Status::ToString() const { return ok() ? "ok" : state_->msg; }

const char* Status::CodeName() const {
  switch (code()) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kCorruption: return "corruption";
    case Code::kIoError: return "io_error";
    case Code::kBusy: return "busy";
    case Code::kUnsupported: return "unsupported";
    case Code::kTimeout: return "timeout";
    case Code::kSuperseded: return "superseded";
  }
  return "unknown";
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(state_->code, state_->err, context + ": " + state_->msg);
}

}  // namespace pheap
