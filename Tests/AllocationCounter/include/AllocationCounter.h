// Counts heap allocations made by the calling thread, for tests that pin
// "allocates nothing per request". The test executable defines malloc and
// its siblings, which forward to glibc's own entry points (__libc_malloc and
// friends); a thread counts only between its own start and stop, so tests
// running on other threads at the same time do not disturb the count.
#ifndef QK_ALLOCATION_COUNTER_H
#define QK_ALLOCATION_COUNTER_H

/// Starts counting this thread's allocations from zero.
void qk_allocation_count_start(void);
/// Stops counting and returns the number of allocations since the start.
long qk_allocation_count_stop(void);

#endif
