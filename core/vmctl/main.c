/* vmctl: the command-line client of vmctld. */
#include <signal.h>

#include "vmctl.h"

int main(int argc, char **argv)
{
	/* a broker that goes away mid-write must give an error, not kill us */
	signal(SIGPIPE, SIG_IGN);
	return cmd_main(argc, argv);
}
