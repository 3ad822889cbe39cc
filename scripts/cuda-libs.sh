# Sourced by the GPU scripts. cudarc opens the driver and NVRTC by name (libcuda.so, libnvrtc.so,
# libnvrtc.so.13, ...): this puts the folders that hold them on the loader's path, leaving out
# CUDA's link-time stubs (a stub libnvrtc.so loads, then answers every call without doing it) and
# the forward-compatibility driver, which must match the kernel module. The first run on an H100
# found the stub folder first and died allocating a garbage size; see docs/results/gpu-h100/.
cuda_libdirs=$(find /usr/local /opt /usr/lib /usr/lib64 \( -name 'libnvrtc.so*' -o -name 'libcuda.so*' \) \
  -not -path '*/stubs/*' -not -path '*/compat/*' -printf '%h\n' 2>/dev/null | sort -ru | tr '\n' ':')
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}${cuda_libdirs%:}
