// MPI status codes become Error(Distributed) naming the call and MPI's own message.
#pragma once

namespace atspeed {
void mpi_check(int status, const char* call, const char* file, int line);
}  // namespace atspeed

#define MPI_CHECK(call) ::atspeed::mpi_check((call), #call, __FILE__, __LINE__)
