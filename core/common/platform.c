/*
 * The host's platform, and the seed's default driver for it. The platform
 * is looked at in one function, host_platform_detect(), which unit tests
 * replace with host_platform_override() to check the default of every
 * platform on any host.
 */
#include "vmcommon.h"

#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/utsname.h>
#endif

static bool platform_overridden;
static struct host_platform platform_override;

#ifdef _WIN32
/* Hyper-V comes with every edition but Home ("Core", "CoreSingleLanguage",
 * "CoreCountrySpecific", ...). */
static bool platform_windows_pro(void)
{
	char edition[64] = "";
	DWORD len = sizeof(edition);

	if (RegGetValueA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
			 "EditionID", RRF_RT_REG_SZ, NULL, edition, &len) != ERROR_SUCCESS)
		return true;
	return strncmp(edition, "Core", 4) != 0;
}
#endif

void host_platform_detect(struct host_platform *p)
{
	memset(p, 0, sizeof(*p));
	if (platform_overridden) {
		*p = platform_override;
		return;
	}
#ifdef _WIN32
	p->os = HOST_WINDOWS;
	p->windows_pro = platform_windows_pro();
	{
		SYSTEM_INFO si;

		GetNativeSystemInfo(&si);
		p->amd64 = si.wProcessorArchitecture == PROCESSOR_ARCHITECTURE_AMD64;
	}
#else
	{
		struct utsname u;

		if (uname(&u) == 0) {
			if (strcmp(u.sysname, "Linux") == 0)
				p->os = HOST_LINUX;
			else if (strcmp(u.sysname, "Darwin") == 0)
				p->os = HOST_MACOS;
			else
				p->os = HOST_OTHER;
			/* The kernel's machine, not the build's: an i386 build on
			 * an amd64 kernel still has QEMU's amd64 guests. */
			p->amd64 = strcmp(u.machine, "x86_64") == 0 || strcmp(u.machine, "amd64") == 0;
		} else {
			p->os = HOST_OTHER;
		}
	}
#endif
}

void host_platform_override(const struct host_platform *p)
{
	platform_overridden = p != NULL;
	if (p)
		platform_override = *p;
}

const char *driver_default_for(const struct host_platform *p)
{
	switch (p->os) {
	case HOST_LINUX:
		return p->amd64 ? "qemu" : "lxd";
	case HOST_MACOS:
		return "qemu";
	case HOST_WINDOWS:
		return p->windows_pro ? "hyperv" : "virtualbox";
	case HOST_OTHER:
		break;
	}
	return "qemu";
}

const char *settings_default_driver(void)
{
	struct host_platform p;

	host_platform_detect(&p);
	return driver_default_for(&p);
}
