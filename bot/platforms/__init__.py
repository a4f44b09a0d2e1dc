"""Meeting platforms behind one seam (`base.Platform`); `urls.parse_meeting_url` picks one."""
