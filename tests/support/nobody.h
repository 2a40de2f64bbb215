// Running as an unprivileged user from a test that runs as root: uid and
// gid 65534 ("nobody"), and whether the kernel gives that user what the
// async-wp-user tracking mode needs. In namespace pheaptest.
#pragma once

#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pager/uapi_compat.h"

namespace pheaptest {

inline constexpr uid_t kNobody = 65534;

// Drops this process's groups, gid and uid to kNobody for good, and keeps
// it dumpable (else /proc/self/pagemap stays root's). False if refused.
inline bool DropToNobody() {
  return setgroups(0, nullptr) == 0 && setresgid(kNobody, kNobody, kNobody) == 0 &&
         setresuid(kNobody, kNobody, kNobody) == 0 && prctl(PR_SET_DUMPABLE, 1) == 0;
}

// Whether uid 65534 gets a userfaultfd for user-mode faults only with
// asynchronous write-protect (Linux 6.7+), whatever the sysctl says. Asks
// in a forked child, so the caller keeps its privileges.
inline bool NobodyHasUserModeWpAsync() {
  pid_t child = fork();
  if (child == 0) {
    if (!DropToNobody()) _exit(3);
    int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC;
    _exit(fd >= 0 && ioctl(fd, UFFDIO_API, &api) == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace pheaptest
