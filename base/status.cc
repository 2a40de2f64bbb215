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

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(state_->code, state_->err, context + ": " + state_->msg);
}

}  // namespace pheap
