"""The ARMS protocol, sans-I/O: XML messages, result codes, HTTP framing, local config texts.

Nothing here opens a socket. Builders return bytes; parsers take bytes and return frozen
records (:mod:`libarms._record`) or raise :class:`~libarms.errors.ProtocolError` (with a message
a person can act on).
"""

from .distid import DistributionId
from .envelope import (SERVER_DECLARATION, Message, build_request, build_response, parse_message,
                       parse_request, parse_response)
from .http import (HttpResponse, ResponseParser, Url, basic_auth, build_post, build_post_chunked,
                   parse_url)
from .http import build_response as build_http_response
from .http import parse_response as parse_http_response
from .initial_config import InitialConfig, MobileAccount, parse_initial_config
from .location import LocationConfig, build_location_config, parse_location_config
from .pull import (FatalAnswer, HeartbeatInfo, Module, ModuleConfig, RsInfo,
                   ConfigSolicitationResponse, RsSolicitationResponse, SolicitationRequest,
                   build_config_solicitation_request, build_config_solicitation_response,
                   build_rs_solicitation_request, build_rs_solicitation_response,
                   parse_config_solicitation_response, parse_rs_solicitation_response,
                   parse_solicitation_request, decode_base64)
from .results import RESULT_TEXT, is_success, result_class, result_text
from .xmlutil import element, escape, parse_document

__all__ = [n for n in dir() if not n.startswith("_")]
