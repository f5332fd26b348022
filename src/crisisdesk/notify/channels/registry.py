"""Which channels this installation can send on, built from the settings."""

from __future__ import annotations

import aiohttp

from crisisdesk.config import Settings
from crisisdesk.notify.channels.base import ChannelAdapter
from crisisdesk.notify.channels.email import EmailChannel
from crisisdesk.notify.channels.slack import SlackChannel
from crisisdesk.notify.channels.slack_dm import SlackDmChannel
from crisisdesk.notify.channels.sms import SmsChannel
from crisisdesk.notify.channels.social import MastodonChannel, XChannel
from crisisdesk.notify.channels.teams import TeamsChannel
from crisisdesk.notify.channels.webhook import WebhookChannel
from crisisdesk.notify.models import Channel


def build_adapters(settings: Settings, http: aiohttp.ClientSession) -> dict[Channel, ChannelAdapter]:
    """One adapter per configured channel; the HTTP ones share ``http``.

    Email, webhooks, Slack and Teams are always there; SMS needs the Twilio account SID, token
    and sender; Slack direct messages (pages) the bot token; Mastodon its instance URL and token;
    X its token.
    """
    timeout = settings.webhook_timeout_seconds
    private = settings.allow_private_webhooks
    adapters: dict[Channel, ChannelAdapter] = {
        Channel.email: EmailChannel(settings),
        Channel.webhook: WebhookChannel(http, timeout=timeout, allow_private=private),
        Channel.slack: SlackChannel(http, timeout=timeout, allow_private=private),
        Channel.teams: TeamsChannel(http, timeout=timeout, allow_private=private),
    }
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from:
        adapters[Channel.sms] = SmsChannel(
            http,
            base_url=settings.twilio_base_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            sender=settings.twilio_from,
            timeout=timeout,
            allow_private=private,
        )
    if settings.slack_bot_token:
        adapters[Channel.slack_dm] = SlackDmChannel(
            http, api_url=settings.slack_api_url, token=settings.slack_bot_token, timeout=timeout, allow_private=private
        )
    if settings.mastodon_base_url and settings.mastodon_token:
        adapters[Channel.mastodon] = MastodonChannel(
            http, base_url=settings.mastodon_base_url, token=settings.mastodon_token, timeout=timeout
        )
    if settings.x_token:
        adapters[Channel.x] = XChannel(http, base_url=settings.x_base_url, token=settings.x_token, timeout=timeout)
    return adapters
