/*
 * Progress of long operations (image downloads, launches), from the broker's
 * `progress` notifications. On a terminal one line is redrawn in place; in a
 * pipe or a log, plain lines are written, only when something worth a line
 * changed, so a log is not flooded with one line per percent.
 */
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmctl.h"

#define PROGRESS_BAR_MAX 30
#define PROGRESS_BAR_MIN 10

static struct {
	bool drawn;     /* a line is on the terminal, without its newline */
	char text[512]; /* last text written as a plain line */
	int percent;    /* last percent written as a plain line */
} progress_state = { .percent = -100 };

static int progress_percent(double fraction)
{
	if (fraction >= 1.0)
		return 100;
	return (int)floor(fraction * 100.0);
}

/* Copy at most max display columns of UTF-8 text. */
static size_t progress_clip(char *dst, size_t dstlen, const char *text, int max)
{
	size_t o = 0;
	int cols = 0;

	for (const char *p = text; *p != '\0' && o + 1 < dstlen; p++) {
		unsigned char c = (unsigned char)*p;

		if ((c & 0xc0) != 0x80) {
			if (cols == max)
				break;
			cols++;
		}
		/* the broker's text is one line; a stray control character would
		 * break the redraw */
		dst[o++] = c < 0x20 ? ' ' : (char)c;
	}
	dst[o] = '\0';
	return o;
}

void progress_format(char *buf, size_t len, const char *text, double fraction, int width)
{
	char clipped[512];
	int bar, text_cols, filled, percent;
	size_t o;

	if (len == 0)
		return;
	if (width < 20)
		width = 20;
	if (text == NULL)
		text = "";
	if (fraction < 0 || isnan(fraction)) {
		progress_clip(buf, len, text, width - 1);
		return;
	}
	if (fraction > 1.0)
		fraction = 1.0;
	percent = progress_percent(fraction);
	/* "TEXT [====>    ] 100%": the bar takes what the text leaves, within limits */
	bar = width - 1 - 8 - (int)strlen(text);
	if (bar > PROGRESS_BAR_MAX)
		bar = PROGRESS_BAR_MAX;
	if (bar < PROGRESS_BAR_MIN)
		bar = PROGRESS_BAR_MIN;
	text_cols = width - 1 - 8 - bar;
	if (text_cols < 0)
		text_cols = 0;
	progress_clip(clipped, sizeof(clipped), text, text_cols);
	filled = (int)floor(fraction * bar);
	o = (size_t)snprintf(buf, len, "%s%s[", clipped, clipped[0] != '\0' ? " " : "");
	for (int i = 0; i < bar && o + 1 < len; i++) {
		char c = ' ';

		if (i < filled)
			c = '=';
		else if (i == filled && filled < bar)
			c = '>';
		buf[o++] = c;
	}
	if (o < len)
		snprintf(buf + o, len - o, "] %3d%%", percent);
	else
		buf[len - 1] = '\0';
}

static int progress_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

/* Not a terminal: a line for a new step, every further 10 percent, and the end. */
static void progress_plain(const char *text, double fraction)
{
	int percent = fraction < 0 ? -1 : progress_percent(fraction);
	/* "Downloading 3.1MiB/s ETA 0:09" changes every time: a step is the
	 * text before its first digit */
	size_t step = strcspn(text, "0123456789");
	bool same_step = strlen(progress_state.text) == step &&
			 strncmp(text, progress_state.text, step) == 0;

	if (same_step && percent < 0)
		return;
	if (same_step && percent < progress_state.percent + 10 &&
	    !(percent == 100 && progress_state.percent != 100))
		return;
	snprintf(progress_state.text, sizeof(progress_state.text), "%.*s", (int)step, text);
	progress_state.percent = percent;
	if (percent < 0)
		fprintf(stderr, "%s\n", text);
	else
		fprintf(stderr, "%s %d%%\n", text, percent);
}

void progress_show(const char *text, double fraction)
{
	char line[1024];

	if (text == NULL)
		text = "";
	if (!isatty(STDERR_FILENO)) {
		progress_plain(text, fraction);
		return;
	}
	progress_format(line, sizeof(line), text, fraction, progress_width());
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	progress_state.drawn = true;
}

void progress_end(void)
{
	if (!progress_state.drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	progress_state.drawn = false;
}
