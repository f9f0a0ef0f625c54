/* SPDX-License-Identifier: ISC */
/* STUB: to be written. */

#include "config.h"

#include "agent.h"
