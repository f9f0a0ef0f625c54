/* SPDX-License-Identifier: ISC */
#include "config.h"
#include "agent.h"
int main(void) { return 0; }
