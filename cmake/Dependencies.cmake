# Third-party dependencies as imported targets. See launch/deps.env for where they come from.

# --- libtorch from the pinned PyPI wheel -------------------------------------------------------
# The wheel ships headers and shared libraries but its CMake package drags in a CUDA toolkit
# discovery of its own; we only need include paths and libraries, so define the target directly.
if(NOT ATSPEED_TORCH_DIR OR NOT EXISTS "${ATSPEED_TORCH_DIR}/include/torch/csrc/api/include/torch/torch.h")
  message(FATAL_ERROR "ATSPEED_TORCH_DIR='${ATSPEED_TORCH_DIR}' does not hold a torch package. "
                      "Run '. launch/setup.sh' first or pass -DATSPEED_TORCH_DIR=<site-packages>/torch")
endif()
set(_torch_lib "${ATSPEED_TORCH_DIR}/lib")
add_library(atspeed_torch INTERFACE)
target_include_directories(atspeed_torch SYSTEM INTERFACE
  "${ATSPEED_TORCH_DIR}/include" "${ATSPEED_TORCH_DIR}/include/torch/csrc/api/include")
target_compile_definitions(atspeed_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
# The wheel bundles fmt 12 headers in its include dir, which would shadow Debian's fmt 9 that
# spdlog 1.10 is built against (spdlog then fails to compile). A shim dir searched before torch's
# makes every <fmt/...> resolve to Debian's fmt; torch's own binaries keep their private copy.
# Searched in CMAKE_PREFIX_PATH first (the GPU kit builds against Debian packages unpacked in a prefix).
find_path(ATSPEED_SYSTEM_FMT_DIR fmt/core.h PATHS ${CMAKE_PREFIX_PATH} /usr PATH_SUFFIXES include NO_DEFAULT_PATH REQUIRED)
file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/fmt-shim")
file(CREATE_LINK "${ATSPEED_SYSTEM_FMT_DIR}/fmt" "${CMAKE_BINARY_DIR}/fmt-shim/fmt" SYMBOLIC)
target_include_directories(atspeed_torch SYSTEM BEFORE INTERFACE "${CMAKE_BINARY_DIR}/fmt-shim")
if(ATSPEED_HAVE_CUDA)
  # --no-as-needed: libtorch_cuda registers the CUDA backend from static initialisers; without it
  # the linker drops the library because no symbol of it is referenced directly.
  target_link_libraries(atspeed_torch INTERFACE
    "-Wl,--no-as-needed" "${_torch_lib}/libtorch_cuda.so" "${_torch_lib}/libc10_cuda.so" "-Wl,--as-needed")
  target_compile_definitions(atspeed_torch INTERFACE ATSPEED_WITH_CUDA=1)
  target_include_directories(atspeed_torch SYSTEM INTERFACE ${CUDAToolkit_INCLUDE_DIRS})
endif()
# libstdc++ first: torch 2.11's libtorch.so exports statically linked std::filesystem functions, and a
# binary that loads libstdc++ after it binds to those broken copies (a segfault in remove_all). Harmless
# for wheels that do not export them (2.15).
target_link_libraries(atspeed_torch INTERFACE "-Wl,--push-state,--no-as-needed,-lstdc++,--pop-state"
  "${_torch_lib}/libtorch.so" "${_torch_lib}/libtorch_cpu.so" "${_torch_lib}/libc10.so")
# Executables find libtorch (and, through its own RPATH, the CUDA libraries of the wheel) here.
set(CMAKE_BUILD_RPATH "${_torch_lib}")
set(CMAKE_INSTALL_RPATH "${_torch_lib}")

# --- Debian packages --------------------------------------------------------------------------
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(yaml-cpp REQUIRED)      # 0.7: target is yaml-cpp
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# LC-Rec / LLaMA tokenizers (core/vocab/tokenizer.cpp); Debian libsentencepiece-dev.
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(GTest REQUIRED)

add_library(atspeed_hdf5 INTERFACE)
target_include_directories(atspeed_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(atspeed_hdf5 INTERFACE ${HDF5_LIBRARIES})
target_compile_definitions(atspeed_hdf5 INTERFACE ${HDF5_DEFINITIONS})

if(ATSPEED_HAVE_CUDA)
  # The NCCL of the torch wheel (newer than the toolkit's): libtorch_cuda needs its symbols, and one
  # process must load one NCCL.
  set(_nccl_root "${ATSPEED_TORCH_DIR}/../nvidia/nccl")
  find_library(ATSPEED_NCCL_LIBRARY NAMES nccl libnccl.so.2 PATHS "${_nccl_root}/lib" NO_DEFAULT_PATH REQUIRED)
  find_path(ATSPEED_NCCL_INCLUDE nccl.h PATHS "${_nccl_root}/include" NO_DEFAULT_PATH REQUIRED)
  list(APPEND CMAKE_BUILD_RPATH "${_nccl_root}/lib")
  add_library(atspeed_nccl INTERFACE)
  target_include_directories(atspeed_nccl SYSTEM INTERFACE ${ATSPEED_NCCL_INCLUDE})
  target_link_libraries(atspeed_nccl INTERFACE ${ATSPEED_NCCL_LIBRARY} CUDA::cudart)
endif()

# Warnings for our own code only (third-party headers are SYSTEM includes).
set(ATSPEED_WARNINGS -Wall -Wextra -Wno-unused-parameter)
