/* The remapper of tests/test_identity_race.py, built there with clang:
 * at one address, until *stop, unmaps the memory and maps anonymous memory
 * there, then maps a memfd over it (MAP_FIXED). A Python thread calls it
 * once: the loop then runs without the GIL, so the remaps fall anywhere in
 * the main thread's calls, not only where it gives the GIL up. Returns 0,
 * or the errno of a failed mmap (EEXIST: something else took the hole,
 * which MAP_FIXED_NOREPLACE refuses to map over). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

long remap_loop(void *addr, unsigned long len, int mfd, volatile int *stop, long *flips)
{
	const int rw = PROT_READ | PROT_WRITE;

	while (!*stop) {
		munmap(addr, len);
		if (mmap(addr, len, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != addr)
			return errno;
		if (mmap(addr, len, rw, MAP_SHARED | MAP_FIXED, mfd, 0) != addr)
			return errno;
		++*flips;
	}
	return 0;
}
